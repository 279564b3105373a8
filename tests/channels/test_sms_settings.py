"""SMS settings, phone normalisation: table-driven, no I/O."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from channels.sms.phone import PhoneError, national_cn, to_e164
from channels.sms.settings import parse_settings, sandbox_settings

EXAMPLE = Path(__file__).parents[2] / "channels" / "sms" / "config.example.toml"
TWILIO = {
    "numbers": ["+15005550006"],
    "public_base_url": "https://sms.example.gov.cn/",
    "twilio": {"account_sid": "AC" + "a" * 32, "auth_token": "t"},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("008613812345678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("tel:+8613812345678", "+8613812345678"),
        ("１３８１２３４５６７８", "+8613812345678"),  # full-width digits from an input method
        ("+1 (415) 555-0100", "+14155550100"),
        ("025-83123456", "+862583123456"),
    ],
)
def test_to_e164(raw: str, expected: str) -> None:
    assert to_e164(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "12", "+86"])
def test_not_a_number(raw: str) -> None:
    with pytest.raises(PhoneError):
        to_e164(raw)


def test_national_cn() -> None:
    assert national_cn("+8613812345678") == "13812345678" and national_cn("+14155550100") == "+14155550100"


def test_example_config_parses() -> None:
    # The example is commented out (the lead merges it into the root file): uncomment and load.
    lines = [line.removeprefix("# ") for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    raw = tomllib.loads("\n".join(line for line in lines if not line.startswith(("#", "---"))))
    settings = parse_settings(raw["sms"])
    assert settings.provider == "twilio" and settings.twilio is not None and settings.reply_budget_s == 5.0


def test_parse_twilio_and_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SULAI_TWILIO_AUTH_TOKEN", "from-env")
    raw = {**TWILIO, "twilio": {"account_sid": "AC" + "a" * 32}}
    settings = parse_settings(raw)
    assert settings.twilio is not None and settings.twilio.auth_token == "from-env"
    assert settings.status_callback_url == "https://sms.example.gov.cn/sms/twilio/status"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provider": "smsbao"}, "sms.provider: expected twilio or aliyun"),
        ({"numbers": []}, "sms.numbers: expected at least one number"),
        ({"public_base_url": "sms.example.gov.cn"}, "sms.public_base_url: expected an http(s) URL"),
        ({"send_rate": 0}, "sms.send_rate: expected a number > 0"),
        ({"inbound_limit": "ten"}, "sms.inbound_limit: expected an integer"),
        ({"twilio": {"account_sid": "XX", "auth_token": "t"}}, "sms.twilio.account_sid: expected 'AC'"),
        ({"twilio": {"account_sid": "AC" + "a" * 32}}, "sms.twilio.auth_token: expected a string (or env"),
        ({"twilio": None}, "sms.twilio: expected a [sms.twilio] table"),
    ],
)
def test_parse_errors_name_the_key(
    change: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SULAI_TWILIO_AUTH_TOKEN", raising=False)
    raw = {k: v for k, v in {**TWILIO, **change}.items() if v is not None}
    with pytest.raises(ValueError) as err:
        parse_settings(raw)
    assert str(err.value).startswith(message)


def test_sandbox_values(tmp_path: Path) -> None:
    s = sandbox_settings(tmp_path, "http://127.0.0.1:4010")
    assert s.twilio is not None
    assert (s.twilio.account_sid, s.twilio.auth_token, s.numbers) == (
        "AC" + "0" * 32,
        "sandbox",
        ("+15005550006",),
    )
    assert (s.twilio.webhook_path, s.twilio.status_path, s.public_base_url) == (
        "/sms/twilio",
        "/sms/twilio/status",
        "http://127.0.0.1:8080",
    )
    assert s.twilio.media_hosts == ("127.0.0.1",)
