"""Engine settings: the tenant's intake forms, category keywords and dialogue knobs.

Forms are data (STYLE.md 10): the defaults live in ``conversation/forms.toml``; a tenant's config
passes a plain mapping to :func:`settings_from_mapping`, which names the offending key in every
ValueError. Loading reads files; the engine itself only ever sees the frozen result.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo
from importlib import resources
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

VALIDATOR_NAMES = frozenset(
    {"description", "location", "phone", "category", "name", "company", "credit_code"}
)
LANGUAGES = ("zh-CN", "en")
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class SlotSpec:
    name: str
    required: bool
    validator: str
    prompt: str  # catalogue key
    ask: bool = True  # optional slots are asked only when this is true


@dataclass(frozen=True, slots=True)
class Form:
    intake_type: str
    slots: tuple[SlotSpec, ...]

    def spec(self, name: str) -> SlotSpec | None:
        return next((s for s in self.slots if s.name == name), None)


@dataclass(frozen=True, slots=True)
class Category:
    name: str  # stored on the ticket, as the platform names it
    keywords: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)  # language -> label shown to citizens

    def label(self, language: str) -> str:
        return self.labels.get(language, self.name)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    forms: Mapping[str, Form]
    categories: tuple[Category, ...]
    language: str = "zh-CN"
    confirm_channels: frozenset[str] = frozenset({"wechat", "sms"})
    reply_working_days: int = 5
    draft_reminder_after: timedelta = timedelta(minutes=30)
    draft_expiry_after: timedelta = timedelta(hours=24)
    max_tries: int = 3
    ticket_prefix: str = "SN"
    tz: tzinfo = CHINA_TZ
    min_description_chars: int = 4
    max_text_chars: int = 2000
    status_list_limit: int = 5

    def form(self, intake_type: str) -> Form:
        return self.forms.get(intake_type) or self.forms["citizen"]

    def category(self, name: str) -> Category | None:
        return next((c for c in self.categories if c.name == name), None)


def _fail(key: str, expected: str, got: object) -> ValueError:
    return ValueError(f"conversation setting {key!r}: expected {expected}, got {got!r}")


def _int(data: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(key, f"an integer ≥ {minimum}", value)
    return value


def _parse_slot(raw: object, where: str) -> SlotSpec:
    if not isinstance(raw, Mapping):
        raise _fail(where, "a table with name, required, validator, prompt", raw)
    name, validator, prompt = raw.get("name"), raw.get("validator", raw.get("name")), raw.get("prompt")
    if not isinstance(name, str) or not name:
        raise _fail(f"{where}.name", "a slot name", name)
    if validator not in VALIDATOR_NAMES:
        raise _fail(f"{where}.validator", f"one of {sorted(VALIDATOR_NAMES)}", validator)
    if not isinstance(prompt, str) or not prompt:
        raise _fail(f"{where}.prompt", "a catalogue key", prompt)
    required, ask = raw.get("required", True), raw.get("ask", True)
    if not isinstance(required, bool) or not isinstance(ask, bool):
        raise _fail(f"{where}.required/ask", "true or false", (required, ask))
    return SlotSpec(name, required, str(validator), prompt, ask)


def _parse_forms(raw: object) -> dict[str, Form]:
    if not isinstance(raw, Mapping) or "citizen" not in raw:
        raise _fail("forms", "a table of forms including 'citizen'", raw)
    forms: dict[str, Form] = {}
    for intake_type, body in raw.items():
        slots = body.get("slots") if isinstance(body, Mapping) else None
        if not isinstance(slots, Sequence) or isinstance(slots, str) or not slots:
            raise _fail(f"forms.{intake_type}.slots", "a non-empty list of slot tables", slots)
        specs = tuple(_parse_slot(s, f"forms.{intake_type}.slots[{i}]") for i, s in enumerate(slots))
        forms[str(intake_type)] = Form(str(intake_type), specs)
    return forms


def _parse_categories(raw: object) -> tuple[Category, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise _fail("categories", "a non-empty list of category tables", raw)
    result = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _fail(f"categories[{i}].name", "a category name", item)
        keywords = item.get("keywords", [])
        if not isinstance(keywords, Sequence) or isinstance(keywords, str):
            raise _fail(f"categories[{i}].keywords", "a list of strings", keywords)
        labels = {"zh-CN": item["name"]}
        if isinstance(item.get("en"), str):
            labels["en"] = item["en"]
        result.append(Category(item["name"], tuple(str(k) for k in keywords), MappingProxyType(labels)))
    return tuple(result)


def default_form_data() -> dict[str, Any]:
    """The packaged defaults (conversation/forms.toml) as a plain mapping."""
    text = resources.files("conversation").joinpath("forms.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def settings_from_mapping(data: Mapping[str, Any] | None = None) -> EngineSettings:
    """Build settings from a tenant's config mapping; absent keys take the packaged defaults."""
    data = dict(data or {})
    defaults = default_form_data()
    language = data.get("language", "zh-CN")
    if language not in LANGUAGES:
        raise _fail("language", f"one of {LANGUAGES}", language)
    confirm = data.get("confirm_channels", ["wechat", "sms"])
    if not isinstance(confirm, Sequence) or isinstance(confirm, str):
        raise _fail("confirm_channels", "a list of channel names", confirm)
    prefix = data.get("ticket_prefix", "SN")
    if (
        not isinstance(prefix, str)
        or not prefix.isascii()
        or not prefix.isalpha()
        or not 1 <= len(prefix) <= 6
    ):
        raise _fail("ticket_prefix", "1-6 ASCII letters", prefix)
    tz_name = data.get("timezone", "Asia/Shanghai")
    try:
        tz: tzinfo = CHINA_TZ if tz_name == "Asia/Shanghai" else ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _fail("timezone", "an IANA time zone name", tz_name) from exc
    return EngineSettings(
        forms=MappingProxyType(_parse_forms(data.get("forms", defaults["forms"]))),
        categories=_parse_categories(data.get("categories", defaults["categories"])),
        language=language,
        confirm_channels=frozenset(str(c) for c in confirm),
        reply_working_days=_int(data, "reply_working_days", 5, 1),
        draft_reminder_after=timedelta(minutes=_int(data, "draft_reminder_minutes", 30, 1)),
        draft_expiry_after=timedelta(hours=_int(data, "draft_expiry_hours", 24, 1)),
        max_tries=_int(data, "max_tries", 3, 1),
        ticket_prefix=prefix.upper(),
        tz=tz,
        min_description_chars=_int(data, "min_description_chars", 4, 1),
        max_text_chars=_int(data, "max_text_chars", 2000, 100),
        status_list_limit=_int(data, "status_list_limit", 5, 1),
    )


def default_settings() -> EngineSettings:
    return settings_from_mapping({})
