from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from mailsac.config import Settings, SettingsError, add_arguments, load_settings, usage_table


def test_defaults_suit_a_laptop() -> None:
    settings = load_settings({})
    assert settings.smtp_port == 2525
    assert settings.http_port == 8080
    assert settings.data_dir == Path("./mailsac-data")
    assert settings.domains == ()
    assert settings.max_message_size == 2_621_440


def test_environment_is_read() -> None:
    settings = load_settings({
        "MAILSAC_SMTP_PORT": "25", "MAILSAC_DOMAINS": "A.test, b.test,,",
        "MAILSAC_DATA_DIR": "/srv/mail", "DATABASE_URL": "postgresql://u@h/db",
        "MAILSAC_MAX_MESSAGE_SIZE": "10_000_000",
    })
    assert settings.smtp_port == 25
    assert settings.domains == ("a.test", "b.test")
    assert settings.data_dir == Path("/srv/mail")
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.max_message_size == 10_000_000


def test_flags_override_environment() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--smtp-port", "2626", "--bind", "0.0.0.0"])
    settings = load_settings({"MAILSAC_SMTP_PORT": "25", "MAILSAC_HTTP_PORT": "9000"}, args)
    assert settings.smtp_port == 2626
    assert settings.http_port == 9000
    assert settings.bind == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILSAC_SMTP_PORT": "seventy"}, "MAILSAC_SMTP_PORT"),
        ({"MAILSAC_HTTP_PORT": "70000"}, "http_port"),
        ({"MAILSAC_MAX_MESSAGE_SIZE": "10"}, "max_message_size"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ],
)
def test_bad_values_are_rejected_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_usage_table_lists_every_variable() -> None:
    table = usage_table()
    for name in ("MAILSAC_SMTP_PORT", "MAILSAC_HTTP_PORT", "MAILSAC_DATA_DIR", "DATABASE_URL",
                 "MAILSAC_DOMAINS", "MAILSAC_MAX_MESSAGE_SIZE"):
        assert name in table
    assert Settings().blob_dir == Path("./mailsac-data/blobs")


def test_readme_documents_every_setting() -> None:
    """README.md is the operator's manual: every variable the service reads is in it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [f.metadata["env"] for f in fields(Settings)
               if f.metadata.get("env") and f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README.md does not mention: {missing}"
