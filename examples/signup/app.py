"""A tiny sign-up web app that e-mails a 6-digit code (the application under test).

Run it by hand: ``SMTP_PORT=2525 python examples/signup/app.py`` (then open the printed
URL); the tests start it on a free port with the SMTP address of the mailsac server.
"""

from __future__ import annotations

import html
import os
import secrets
import smtplib
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Acme sign-up</title></head>
<body>{body}</body></html>"""

SIGN_UP_FORM = """<h1>Create your Acme account</h1>
<form method="post" action="/signup">
  <label>E-mail <input type="email" name="email" required></label>
  <button type="submit">Sign up</button>
</form>"""

CODE_FORM = """<h1>Check your inbox</h1>
<p>We sent a 6-digit code to {email}.</p>
<form method="post" action="/verify">
  <input type="hidden" name="email" value="{email}">
  <label>Code <input name="code" inputmode="numeric" autocomplete="one-time-code"></label>
  <button type="submit">Verify</button>
</form>"""


class SignupApp:
    """The app: ``start()`` serves on 127.0.0.1 (a free port by default), ``stop()``."""

    def __init__(self, smtp_host: str, smtp_port: int, port: int = 0) -> None:
        self.smtp_host, self.smtp_port = smtp_host, smtp_port
        self.pending: dict[str, str] = {}  # e-mail -> the code sent to it
        self.active: set[str] = set()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply(200, SIGN_UP_FORM)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/signup":
                    email = form.get("email", "").strip()
                    app.send_code(email)
                    self._reply(200, CODE_FORM.format(email=html.escape(email)))
                elif self.path == "/verify":
                    email = form.get("email", "")
                    if app.pending.get(email) == form.get("code", "").strip():
                        app.active.add(email)
                        self._reply(200, f"<h1>Welcome aboard!</h1><p>{html.escape(email)} "
                                         "is now active.</p>")
                    else:
                        self._reply(400, "<h1>Wrong code</h1>")
                else:
                    self._reply(404, "<h1>Not found</h1>")

            def _reply(self, status: int, body: str) -> None:
                data = PAGE.format(body=body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def send_code(self, email: str) -> None:
        code = f"{secrets.randbelow(10**6):06d}"
        self.pending[email] = code
        msg = EmailMessage()
        msg["From"] = "Acme <no-reply@acme.example>"
        msg["To"] = email
        msg["Subject"] = "Your Acme sign-up code"
        msg.set_content(f"Welcome to Acme!\n\nYour verification code is {code}.\n"
                        "It expires in 10 minutes. Call us at +1 555 0100 if you need help.\n")
        msg.add_alternative(
            f"<p>Welcome to Acme!</p><p>Your verification code is <b>{code}</b>.</p>"
            "<p>It expires in 10 minutes. Call us at +1 555 0100 if you need help.</p>",
            subtype="html")
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=30) as smtp:
            smtp.send_message(msg)

    def start(self) -> SignupApp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    running = SignupApp(os.environ.get("SMTP_HOST", "127.0.0.1"),
                        int(os.environ.get("SMTP_PORT", "2525")),
                        int(os.environ.get("PORT", "8000")))
    print(f"sign-up app on {running.url} (mail to {running.smtp_host}:{running.smtp_port})")
    running.server.serve_forever()
