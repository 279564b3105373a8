"""Email settings: the example config loads, wrong values name their key, secrets from env."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from channels.email.settings import EmailSettings, parse_settings, sandbox_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "channels" / "email" / "config.example.toml"


def test_example_config_loads() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["email"]
    s = parse_settings(raw, "email", env={"SULAI_EMAIL_IMAP_HOTLINE_PASSWORD": "from-env"})
    assert s.addresses == ("12345@gov.example.cn",) and s.relay.security == "starttls"
    assert s.listener.max_message_bytes == 25 * 1024 * 1024
    [mb] = s.imap
    assert mb.tls and mb.port == 993 and mb.password == "from-env" and mb.after == "seen"


def test_defaults_and_sandbox(tmp_path: Path) -> None:
    s = parse_settings({}, "email", env={})
    assert s == EmailSettings()
    assert s.listener.max_message_bytes == 25 * 1024 * 1024 and s.ack_per_hour == 5
    sb = sandbox_settings(tmp_path, relay_port=2600)
    assert sb.addresses == ("hotline@sulai.test",) and sb.relay.port == 2600 and sb.relay.security == "none"
    assert sb.message_id_domain == "sulai.test"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"addresses": ["not-an-address"]}, "email.addresses[0]"),
        ({"ack_per_hour": 0}, "email.ack_per_hour"),
        ({"relay": {"security": "ssl"}}, "email.relay.security"),
        ({"listener": {"require_starttls": True}}, "email.listener.require_starttls"),
        ({"listener": {"auth_required": True}}, "email.listener.auth_users"),
        (
            {"imap": [{"name": "x", "host": "imap.example.com", "tls": False, "user": "u"}]},
            "email.imap[0].tls",
        ),
        ({"imap": [{"name": "x", "host": "127.0.0.1", "after": "delete"}]}, "email.imap[0].after"),
        (
            {"imap": [{"name": "x", "host": "h", "idle_renew_seconds": 3600}]},
            "email.imap[0].idle_renew_seconds",
        ),
        ({"bogus": 1}, "email.bogus"),
    ],
)
def test_wrong_values_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_settings(raw, "email", env={})
    assert str(err.value).startswith(f"{key}: expected")


def test_plain_imap_allowed_on_loopback_only() -> None:
    s = parse_settings({"imap": [{"name": "local", "host": "127.0.0.1", "tls": False, "user": "u"}]}, env={})
    assert not s.imap[0].tls and s.imap[0].port == 143
