"""Settings of the SMS channel: which provider, its credentials, our numbers, budgets and limits.

Parsed from the ``[sms]`` table of the config (``parse_settings``) or built for the sandbox
(``sandbox_settings``, DESIGN.md "Defaults and the sandbox contract"). Secrets may come from the
environment instead of the file:

- ``SULAI_TWILIO_AUTH_TOKEN``     -> ``sms.twilio.auth_token``
- ``SULAI_TWILIO_SHARED_KEY``     -> ``sms.twilio.shared_key`` (Webhooks SHA-256 variant)
- ``SULAI_ALIYUN_ACCESS_KEY_SECRET`` -> ``sms.aliyun.access_key_secret``
- ``SULAI_ALIYUN_URL_TOKEN``      -> ``sms.aliyun.url_token``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

PROVIDERS = ("twilio", "aliyun")

# Twilio serves MMS media from its API host and redirects to its media CDN.
DEFAULT_MEDIA_HOSTS = ("api.twilio.com", "media.twiliocdn.com", "mms.twiliocdn.com")

SANDBOX_ACCOUNT_SID = "AC" + "0" * 32
SANDBOX_AUTH_TOKEN = "sandbox"
SANDBOX_NUMBER = "+15005550006"
SANDBOX_PUBLIC_BASE = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    shared_key: str = ""  # secret of a Webhooks SharedKey; empty: reject the SHA-256 variant
    api_base: str = "https://api.twilio.com"
    webhook_path: str = "/sms/twilio"
    status_path: str = "/sms/twilio/status"
    media_hosts: tuple[str, ...] = DEFAULT_MEDIA_HOSTS
    media_max_bytes: int = 5 * 1024 * 1024  # Twilio's own MMS limit
    timeout_s: float = 10.0


@dataclass(frozen=True)
class AliyunSettings:
    access_key_id: str
    access_key_secret: str
    sign_name: str  # the approved 签名
    url_token: str  # Aliyun pushes are unsigned: a secret token in the push URL instead
    templates: Mapping[str, str] = field(default_factory=dict)  # catalogue key -> SMS_… code
    api_base: str = "https://dysmsapi.aliyuncs.com"
    webhook_path: str = "/sms/aliyun"
    region: str = "cn-hangzhou"
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SmsSettings:
    provider: str
    numbers: tuple[str, ...]  # our numbers (E.164 for Twilio; the sign's number for Aliyun)
    public_base_url: str  # as the provider sees us; signatures cover this, not aiohttp's view
    tenant: str = "default"
    twilio: TwilioSettings | None = None
    aliyun: AliyunSettings | None = None
    reply_budget_s: float = 5.0  # well under Twilio's 15 s
    inbound_limit: int = 10  # texts per number per window before "please wait"
    inbound_window_s: int = 60
    send_rate: float = 1.0  # segments per second per number (Twilio long codes)
    send_burst: int = 3  # segments a number may get at once before the rate applies
    confirmation: bool = True  # the engine's confirm-before-filing step (costs one text)
    default_region: str = "CN"  # numbers without a country prefix are Chinese

    @property
    def status_callback_url(self) -> str:
        path = self.twilio.status_path if self.twilio else "/sms/twilio/status"
        return self.public_base_url.rstrip("/") + path


# ---------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Typed access to one TOML table, with errors that name the full key."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a table, got {type(raw).__name__}")
        self.raw = raw
        self.where = where

    def _fail(self, key: str, expected: str, got: object) -> ValueError:
        return ValueError(f"{self.where}.{key}: expected {expected}, got {got!r}")

    def text(self, key: str, default: str | None = None, env: str = "") -> str:
        value = self.raw.get(key)
        if value is None and env:
            value = os.environ.get(env)
        if value is None:
            if default is None:
                hint = f" (or env {env})" if env else ""
                raise self._fail(key, f"a string{hint}", None)
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def num(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise self._fail(key, f"a number > {minimum:g}", value)
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._fail(key, "an integer ≥ 1", value)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def strs(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def path(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if not value.startswith("/"):
            raise self._fail(key, "a path starting with /", value)
        return value

    def table(self, key: str) -> _Reader | None:
        value = self.raw.get(key)
        return None if value is None else _Reader(value, f"{self.where}.{key}")


def _url(r: _Reader, key: str, default: str | None = None) -> str:
    value = r.text(key, default)
    if not value.startswith(("http://", "https://")):
        raise r._fail(key, "an http(s) URL", value)
    return value.rstrip("/")


def _twilio(r: _Reader) -> TwilioSettings:
    sid = r.text("account_sid")
    if not (sid.startswith("AC") and len(sid) == 34):
        raise r._fail("account_sid", "'AC' followed by 32 hex digits", sid)
    return TwilioSettings(
        account_sid=sid,
        auth_token=r.text("auth_token", env="SULAI_TWILIO_AUTH_TOKEN"),
        shared_key=r.text("shared_key", "", env="SULAI_TWILIO_SHARED_KEY"),
        api_base=_url(r, "api_base", "https://api.twilio.com"),
        webhook_path=r.path("webhook_path", "/sms/twilio"),
        status_path=r.path("status_path", "/sms/twilio/status"),
        media_hosts=r.strs("media_hosts", DEFAULT_MEDIA_HOSTS),
        media_max_bytes=r.integer("media_max_bytes", 5 * 1024 * 1024),
        timeout_s=r.num("timeout_s", 10.0),
    )


def _aliyun(r: _Reader) -> AliyunSettings:
    templates = r.raw.get("templates", {})
    if not isinstance(templates, Mapping) or not all(
        isinstance(v, str) and v.startswith("SMS_") for v in templates.values()
    ):
        raise r._fail("templates", "a table of catalogue key = 'SMS_…' template code", templates)
    return AliyunSettings(
        access_key_id=r.text("access_key_id"),
        access_key_secret=r.text("access_key_secret", env="SULAI_ALIYUN_ACCESS_KEY_SECRET"),
        sign_name=r.text("sign_name"),
        url_token=r.text("url_token", env="SULAI_ALIYUN_URL_TOKEN"),
        templates=MappingProxyType(dict(templates)),
        api_base=_url(r, "api_base", "https://dysmsapi.aliyuncs.com"),
        webhook_path=r.path("webhook_path", "/sms/aliyun"),
        region=r.text("region", "cn-hangzhou"),
        timeout_s=r.num("timeout_s", 10.0),
    )


def parse_settings(raw: Mapping[str, Any], where: str = "sms") -> SmsSettings:
    """The ``[sms]`` table as typed settings; ``ValueError`` names the offending key."""
    r = _Reader(raw, where)
    provider = r.text("provider", "twilio")
    if provider not in PROVIDERS:
        raise r._fail("provider", " or ".join(PROVIDERS), provider)
    sub = r.table(provider)
    if sub is None:
        raise r._fail(provider, f"a [{where}.{provider}] table for provider {provider!r}", None)
    numbers = r.strs("numbers", ())
    if not numbers:
        raise r._fail("numbers", "at least one number of ours", [])
    return SmsSettings(
        provider=provider,
        numbers=numbers,
        public_base_url=_url(r, "public_base_url"),
        tenant=r.text("tenant", "default"),
        twilio=_twilio(sub) if provider == "twilio" else None,
        aliyun=_aliyun(sub) if provider == "aliyun" else None,
        reply_budget_s=r.num("reply_budget_s", 5.0),
        inbound_limit=r.integer("inbound_limit", 10),
        inbound_window_s=r.integer("inbound_window_s", 60),
        send_rate=r.num("send_rate", 1.0),
        send_burst=r.integer("send_burst", 3),
        confirmation=r.flag("confirmation", True),
        default_region=r.text("default_region", "CN"),
    )


# Keys of the ``[sms]`` table that also apply in the sandbox: limits and budgets, never the
# provider, its credentials or our numbers, which are the sandbox contract's fixed values.
SANDBOX_OVERRIDABLE = (
    "reply_budget_s",
    "inbound_limit",
    "inbound_window_s",
    "send_rate",
    "send_burst",
    "confirmation",
)


def sandbox_settings(
    data_dir: Path,
    api_base: str,
    public_base_url: str = SANDBOX_PUBLIC_BASE,
    overrides: Mapping[str, Any] | None = None,
) -> SmsSettings:
    """DESIGN.md's Twilio sandbox values, pointed at the loopback fake at ``api_base``.

    ``overrides`` is the config's ``[sms]`` table: "a config.toml overrides any of them"
    (DESIGN.md) for the keys in :data:`SANDBOX_OVERRIDABLE` (a benchmark raises the flood limit,
    say); other keys are ignored, so the sandbox always talks to its fake.

    ``data_dir`` is accepted for symmetry with the other channels; the fake records what it was
    sent under ``<data_dir>/sandbox/sms-sent.jsonl`` (see ``fake_twilio.start_fake``)."""
    del data_dir
    host = api_base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    r = _Reader({k: v for k, v in (overrides or {}).items() if k in SANDBOX_OVERRIDABLE}, "sms")
    return SmsSettings(
        provider="twilio",
        numbers=(SANDBOX_NUMBER,),
        public_base_url=public_base_url,
        twilio=TwilioSettings(
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            api_base=api_base.rstrip("/"),
            media_hosts=(host,),
        ),
        reply_budget_s=r.num("reply_budget_s", 5.0),
        inbound_limit=r.integer("inbound_limit", 10),
        inbound_window_s=r.integer("inbound_window_s", 60),
        send_rate=r.num("send_rate", 1.0),
        send_burst=r.integer("send_burst", 3),
        confirmation=r.flag("confirmation", True),
    )
