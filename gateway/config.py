"""Typed settings loaded from TOML (``tomllib``), with secrets from ``SULAI_…`` environment variables.

A wrong or missing value stops startup with a :class:`ConfigError` naming the key and what is
expected. With no file at all, every value takes the default of DESIGN.md's table (ports
8080/8081/2525, ``./data``, tenant ``default`` with prefix ``SN``, Asia/Shanghai, zh-CN).

Channel sections (``[wechat]``, ``[sms]``, ``[email]``) and ``[conversation]`` are kept as raw
mappings here and parsed by their own packages, which know their shapes; this module only checks
that they are tables.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A configuration value is wrong or missing; the message names the key."""

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        detail = f", got {got!r}" if got is not None else ""
        super().__init__(f"config key '{key}': expected {expected}{detail}")
        self.key = key


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""  # empty: start the embedded Valkey in the data directory
    wait_aof: bool = False  # WAITAOF after ticket creation: ack only once the AOF is fsynced


@dataclass(frozen=True)
class HttpSettings:
    public_host: str = "127.0.0.1"
    public_port: int = 8080
    staff_host: str = "127.0.0.1"
    staff_port: int = 8081
    public_base_url: str = ""  # as providers see us (TLS proxy); default http://public_host:public_port
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525


@dataclass(frozen=True)
class TenantSettings:
    id: str = "default"
    prefix: str = "SN"
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    reply_deadline_days: int = 5
    quiet_hours: str = "21:30-08:00"  # local time; empty string disables
    mask_personal_data: bool = True  # unit and viewer roles see 138****5678
    max_redispatch: int = 2
    survey_reminder_hours: float = 24.0
    survey_expiry_hours: float = 72.0
    # A citizen's mail to a closed ticket's thread: "reopen" it, or file a "new" ticket linked to it.
    closed_reply: str = "reopen"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quiet_window(self) -> tuple[time, time] | None:
        if not self.quiet_hours:
            return None
        start, end = self.quiet_hours.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)


@dataclass(frozen=True)
class DispatcherSettings:
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    reclaim_idle_s: float = 60.0
    batch: int = 64


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    json: bool = True


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    redis: RedisSettings = field(default_factory=RedisSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    tenant: TenantSettings = field(default_factory=TenantSettings)
    dispatcher: DispatcherSettings = field(default_factory=DispatcherSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # Raw tables parsed by their own packages.
    conversation: Mapping[str, Any] = field(default_factory=dict)
    wechat: Mapping[str, Any] = field(default_factory=dict)
    sms: Mapping[str, Any] = field(default_factory=dict)
    email: Mapping[str, Any] = field(default_factory=dict)
    webhooks: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    @property
    def public_base_url(self) -> str:
        return self.http.public_base_url or f"http://{self.http.public_host}:{self.http.public_port}"


SECTIONS: dict[str, type] = {
    "redis": RedisSettings,
    "http": HttpSettings,
    "smtp": SmtpSettings,
    "tenant": TenantSettings,
    "dispatcher": DispatcherSettings,
    "logging": LoggingSettings,
}
RAW_TABLES = ("conversation", "wechat", "sms", "email", "webhooks")

# Secrets that may come from the environment instead of the file: env var -> dotted key.
ENV_OVERRIDES = {
    "SULAI_REDIS_URL": "redis.url",
    "SULAI_DATA_DIR": "data_dir",
}

_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PREFIX = re.compile(r"^[A-Z]{1,4}$")


def _typed(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "true or false", value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "an integer", value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, "a number", value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, "a string", value)
        return value
    raise ConfigError(key, f"a {kind.__name__}", value)


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(name, "a table", raw)
    defaults = cls()
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"one of {', '.join(sorted(known))} (unknown key)")
    values = {k: _typed(f"{name}.{k}", v, getattr(defaults, k)) for k, v in raw.items()}
    return cls(**values)


def _set_dotted(raw: dict[str, Any], dotted: str, value: str) -> None:
    parts = dotted.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _validate(s: Settings) -> None:
    t = s.tenant
    if not _TENANT_ID.match(t.id):
        raise ConfigError("tenant.id", "lower-case letters, digits, '-' or '_' (max 32)", t.id)
    if not _PREFIX.match(t.prefix):
        raise ConfigError("tenant.prefix", "1–4 upper-case letters", t.prefix)
    try:
        ZoneInfo(t.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("tenant.timezone", "an IANA time zone such as Asia/Shanghai", t.timezone) from None
    if t.language not in ("zh-CN", "en"):
        raise ConfigError("tenant.language", "zh-CN or en", t.language)
    try:
        t.quiet_window  # noqa: B018 - parse check
    except ValueError:
        raise ConfigError("tenant.quiet_hours", "HH:MM-HH:MM or an empty string", t.quiet_hours) from None
    if t.closed_reply not in ("reopen", "new"):
        raise ConfigError("tenant.closed_reply", '"reopen" or "new"', t.closed_reply)
    if not 1 <= t.reply_deadline_days <= 60:
        raise ConfigError("tenant.reply_deadline_days", "1–60 working days", t.reply_deadline_days)
    for key, port in (
        ("http.public_port", s.http.public_port),
        ("http.staff_port", s.http.staff_port),
        ("smtp.port", s.smtp.port),
    ):
        if not 0 <= port <= 65535:
            raise ConfigError(key, "a TCP port 0–65535", port)
    if s.http.public_port and s.http.public_port == s.http.staff_port:
        raise ConfigError("http.staff_port", "a port other than http.public_port (staff API is separate)")
    if s.redis.url and not s.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "redis.url", "redis://, rediss:// or unix:// (empty for the embedded server)", s.redis.url
        )
    if s.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level", "DEBUG, INFO, WARNING or ERROR", s.logging.level)


def settings_from_mapping(
    raw: Mapping[str, Any], source: str = "<mapping>", env: Mapping[str, str] | None = None
) -> Settings:
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for var, dotted in ENV_OVERRIDES.items():
        value = (env if env is not None else os.environ).get(var)
        if value:
            _set_dotted(data, dotted, value)
    kwargs: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key == "data_dir":
            if not isinstance(value, str) or not value:
                raise ConfigError("data_dir", "a directory path", value)
            kwargs["data_dir"] = Path(value)
        elif key in SECTIONS:
            kwargs[key] = _section(key, SECTIONS[key], value)
        elif key in RAW_TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(key, "a table", value)
            kwargs[key] = value
        else:
            allowed = ["data_dir", *SECTIONS, *RAW_TABLES]
            raise ConfigError(key, f"one of {', '.join(allowed)} (unknown key)")
    settings = Settings(**kwargs)
    _validate(settings)
    return settings


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Load ``path`` (None: defaults only). Raises ConfigError with the offending key."""
    if path is None:
        return settings_from_mapping({}, "<defaults>", env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", f"an existing TOML file ({path} not found)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"valid TOML ({path}: {exc})") from None
    return settings_from_mapping(raw, str(path), env)
