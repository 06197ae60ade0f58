"""The official Mailsac client (the npm package ``@mailsac/api``) against our server: mail
sent the way an application sends it (STARTTLS, then AUTH with the account name and an
API key: Email Capture) is read back through the client's own methods.

Needs Node.js and npm (the package is installed once into a cache directory); skipped
when either is missing or the npm registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import tempfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import ServerHandle, client, new_account, unique_inbox
from tests.tlsutil import trusting

CLIENT_VERSION = "1.0.8"

SCRIPT = r"""
const { Mailsac } = require(process.env.CLIENT_DIR + "/node_modules/@mailsac/api");
const mailsac = new Mailsac({ baseURL: process.env.BASE_URL,
                              headers: { "Mailsac-Key": process.env.KEY } });
(async () => {
  const me = (await mailsac.account.user()).data;
  const listed = (await mailsac.messages.listMessages(process.env.INBOX)).data;
  const text = (await mailsac.messages.getBodyPlainText(process.env.INBOX, listed[0]._id)).data;
  console.log(JSON.stringify({ me, listed, text }));
})().catch((err) => { console.error(err.message); process.exit(1); });
"""


@pytest.fixture(scope="module")
def official_client() -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js and npm are needed for the official client")
    where = Path(tempfile.gettempdir()) / f"mailsac-official-client-{CLIENT_VERSION}"
    if not (where / "node_modules" / "@mailsac" / "api").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                               "--prefix", str(where), f"@mailsac/api@{CLIENT_VERSION}"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm could not install @mailsac/api: {done.stderr[-300:]}")
    return where


def test_captured_mail_through_the_official_client(server: ServerHandle,
                                                   official_client: Path) -> None:
    account, key = new_account(server, "official")
    with client(server, key) as api:
        assert api.put("/api/me", json={"capturePrivate": True}).status_code == 200
    inbox = unique_inbox("capture-example.com")
    msg = EmailMessage()
    msg["From"] = "app@example.org"
    msg["To"] = inbox
    msg["Subject"] = "Your code is 482913"
    msg.set_content("Welcome! Your code is 482913.")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.starttls(context=trusting(server.data_dir / "tls" / "cert.pem"))
        smtp.login(account, key)  # the way Django/Rails/nodemailer log in
        smtp.send_message(msg)
    done = subprocess.run(
        ["node", "-e", SCRIPT], capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "CLIENT_DIR": str(official_client),
             "BASE_URL": f"{server.http_url}/api", "KEY": key, "INBOX": inbox})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["me"]["_id"] == account and result["me"]["capturePrivate"] is True
    [message] = result["listed"]
    assert message["subject"] == "Your code is 482913"
    assert message["rtls"] is True and message["savedBy"] == account  # captured privately
    assert "482913" in result["text"]
