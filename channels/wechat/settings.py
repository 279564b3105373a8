"""WeChat channel settings: accounts, budgets, limits, templates, scenes and the menu.

Parsed once from the ``[wechat]`` table of the config into frozen dataclasses; every wrong or
missing value raises ``ValueError("<where>.<key>: expected …, got …")``.

Secrets may come from the environment instead of the file, per account ``<NAME>`` (upper-cased,
``-`` → ``_``): ``SULAI_WECHAT_<NAME>_SECRET``, ``SULAI_WECHAT_<NAME>_TOKEN``,
``SULAI_WECHAT_<NAME>_AES_KEY``, ``SULAI_WECHAT_<NAME>_PREVIOUS_AES_KEY``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REAL_API_BASE = "https://api.weixin.qq.com"
MODES = ("plaintext", "compatible", "safe")
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")


@dataclass(frozen=True, slots=True)
class Account:
    """One Official Account. ``account_id`` is the gh_ id WeChat puts in ToUserName."""

    name: str
    account_id: str
    appid: str
    secret: str
    token: str
    encoding_aes_key: str = ""
    previous_encoding_aes_key: str = ""
    mode: str = "plaintext"
    path: str = ""
    tenant: str = "default"


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """A template or subscription message for one catalogue key. ``fields`` maps the template's
    field name to a format string over the Outbound params plus ``{text}`` (the rendered text)."""

    template_id: str
    fields: Mapping[str, str]
    url: str = ""  # template: the page opened on tap; subscription: ``page``
    long_term: bool = False  # subscription only: long-term consent (public-service accounts)


@dataclass(frozen=True, slots=True)
class SceneRule:
    """What a QR scene ``<prefix>[:<value>]`` means: the intake type and which attr gets the value."""

    intake: str
    attr: str = ""


@dataclass(frozen=True, slots=True)
class MenuButton:
    name: str
    type: str = "click"  # click | view
    key: str = ""  # click key, sent back in CLICK events
    url: str = ""  # view buttons
    command: str = ""  # what a click means to the conversation: new_report, my_tickets, help
    sub_buttons: tuple[MenuButton, ...] = ()


@dataclass(frozen=True, slots=True)
class WeChatSettings:
    accounts: tuple[Account, ...]
    api_base: str = REAL_API_BASE
    reply_budget_s: float = 3.0
    timestamp_window_s: int = 300
    max_body_bytes: int = 64 * 1024
    custom_quota: int = 5
    custom_window_s: int = 48 * 3600
    event_quota: int = 3  # after a follow, scan or menu click: 3 messages …
    event_window_s: int = 60  # … within one minute (PROTOCOLS.md A.5)
    template_field_max: int = 20
    media_timeout_s: float = 2.0
    use_stable_token: bool = True
    templates: Mapping[str, TemplateSpec] = field(default_factory=dict)
    subscriptions: Mapping[str, TemplateSpec] = field(default_factory=dict)
    scenes: Mapping[str, SceneRule] = field(default_factory=dict)
    default_intake: str = "citizen"
    menu: tuple[MenuButton, ...] = ()

    def account_by_appid(self, appid: str) -> Account | None:
        return next((a for a in self.accounts if a.appid == appid), None)

    def account_by_path(self, path: str) -> Account | None:
        return next((a for a in self.accounts if a.path == path), None)

    def click_command(self, key: str) -> str:
        for button in self.menu:
            for b in (button, *button.sub_buttons):
                if b.key == key and b.command:
                    return b.command
        return ""


# ---------------------------------------------------------------------------------------------


def _get(raw: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = raw.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind in (int, float):
        raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{where}.{key}: expected {name}, got {value!r}")
    return value


def _positive(raw: Mapping[str, Any], key: str, where: str, kind: type, default: Any) -> Any:
    value = _get(raw, key, where, kind, default)
    if value <= 0:
        raise ValueError(f"{where}.{key}: expected a positive number, got {value!r}")
    return value


def _secret(raw: Mapping[str, Any], key: str, env: str, where: str, required: bool) -> str:
    value = os.environ.get(env) or raw.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{where}.{key}: expected a non-empty string (or env {env}), got {value!r}")
    return value


def _account(raw: Mapping[str, Any], where: str) -> Account:
    name = _get(raw, "name", where, str, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"{where}.name: expected letters, digits, _ or -, got {name!r}")
    env = f"SULAI_WECHAT_{name.upper().replace('-', '_')}_"
    mode = _get(raw, "mode", where, str, "plaintext")
    if mode not in MODES:
        raise ValueError(f"{where}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    aes = _secret(raw, "encoding_aes_key", env + "AES_KEY", where, mode != "plaintext")
    previous = _secret(raw, "previous_encoding_aes_key", env + "PREVIOUS_AES_KEY", where, False)
    for key, value in (("encoding_aes_key", aes), ("previous_encoding_aes_key", previous)):
        if value and not _AES_KEY.match(value):
            raise ValueError(f"{where}.{key}: expected 43 base64 characters, got {len(value)} characters")
    account_id = _get(raw, "account_id", where, str, "")
    if not account_id.startswith("gh_"):
        raise ValueError(f"{where}.account_id: expected the gh_ id, got {account_id!r}")
    appid = _get(raw, "appid", where, str, "")
    if not appid:
        raise ValueError(f"{where}.appid: expected the AppID, got {appid!r}")
    path = _get(raw, "path", where, str, f"/wechat/{name}")
    if not path.startswith("/"):
        raise ValueError(f"{where}.path: expected a path starting with /, got {path!r}")
    return Account(
        name=name,
        account_id=account_id,
        appid=appid,
        secret=_secret(raw, "secret", env + "SECRET", where, True),
        token=_secret(raw, "token", env + "TOKEN", where, True),
        encoding_aes_key=aes,
        previous_encoding_aes_key=previous,
        mode=mode,
        path=path,
        tenant=_get(raw, "tenant", where, str, "default"),
    )


def _templates(raw: Mapping[str, Any], where: str) -> dict[str, TemplateSpec]:
    out: dict[str, TemplateSpec] = {}
    for key, spec in raw.items():
        w = f"{where}.{key}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{w}: expected a table, got {spec!r}")
        fields = _get(spec, "fields", w, dict, {})
        if not fields or not all(isinstance(v, str) for v in fields.values()):
            raise ValueError(f'{w}.fields: expected a table of field = "format" strings, got {fields!r}')
        template_id = _get(spec, "template_id", w, str, "")
        if not template_id:
            raise ValueError(f"{w}.template_id: expected a template id, got {template_id!r}")
        out[key] = TemplateSpec(
            template_id=template_id,
            fields=dict(fields),
            url=_get(spec, "url", w, str, "") or _get(spec, "page", w, str, ""),
            long_term=_get(spec, "long_term", w, bool, False),
        )
    return out


def _buttons(raw: Any, where: str) -> tuple[MenuButton, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a list of buttons, got {raw!r}")
    out = []
    for i, b in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(b, Mapping):
            raise ValueError(f"{w}: expected a table, got {b!r}")
        kind = _get(b, "type", w, str, "click")
        if kind not in ("click", "view"):
            raise ValueError(f"{w}.type: expected click or view, got {kind!r}")
        out.append(
            MenuButton(
                name=_get(b, "name", w, str, ""),
                type=kind,
                key=_get(b, "key", w, str, ""),
                url=_get(b, "url", w, str, ""),
                command=_get(b, "command", w, str, ""),
                sub_buttons=_buttons(b.get("sub_button", []), f"{w}.sub_button"),
            )
        )
    return tuple(out)


def parse_settings(raw: Mapping[str, Any], where: str = "wechat") -> WeChatSettings:
    accounts_raw = _get(raw, "accounts", where, list, [])
    accounts = tuple(_account(a, f"{where}.accounts[{i}]") for i, a in enumerate(accounts_raw))
    for attr in ("name", "appid", "path"):
        values = [getattr(a, attr) for a in accounts]
        if len(values) != len(set(values)):
            raise ValueError(f"{where}.accounts: expected unique {attr}s, got {values!r}")
    scenes = {}
    for prefix, rule in _get(raw, "scenes", where, dict, {}).items():
        w = f"{where}.scenes.{prefix}"
        if not isinstance(rule, Mapping):
            raise ValueError(f"{w}: expected a table, got {rule!r}")
        scenes[prefix] = SceneRule(
            intake=_get(rule, "intake", w, str, "citizen"), attr=_get(rule, "attr", w, str, "")
        )
    return WeChatSettings(
        accounts=accounts,
        api_base=_get(raw, "api_base", where, str, REAL_API_BASE).rstrip("/"),
        reply_budget_s=_positive(raw, "reply_budget_s", where, float, 3.0),
        timestamp_window_s=_positive(raw, "timestamp_window_s", where, int, 300),
        max_body_bytes=_positive(raw, "max_body_bytes", where, int, 64 * 1024),
        custom_quota=_positive(raw, "custom_quota", where, int, 5),
        custom_window_s=_positive(raw, "custom_window_s", where, int, 48 * 3600),
        event_quota=_get(raw, "event_quota", where, int, 3),
        event_window_s=_get(raw, "event_window_s", where, int, 60),
        template_field_max=_positive(raw, "template_field_max", where, int, 20),
        media_timeout_s=_positive(raw, "media_timeout_s", where, float, 2.0),
        use_stable_token=_get(raw, "use_stable_token", where, bool, True),
        templates=_templates(_get(raw, "templates", where, dict, {}), f"{where}.templates"),
        subscriptions=_templates(_get(raw, "subscriptions", where, dict, {}), f"{where}.subscriptions"),
        scenes=scenes,
        default_intake=_get(raw, "default_intake", where, str, "citizen"),
        menu=_buttons(raw.get("menu", []), f"{where}.menu"),
    )


SANDBOX_ACCOUNT = {
    "name": "sandbox",
    "account_id": "gh_sandbox",
    "appid": "wxsandbox000000000",
    "secret": "sandbox",
    "token": "sandbox",
    "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    # Compatible mode accepts both plaintext and encrypted pushes, so the simulator can do either.
    "mode": "compatible",
    "path": "/wechat/sandbox",
}

# The catalogue keys of the staff side's status pushes and surveys (gateway/staff/pushes.py):
# outside the 48-h window each goes out as this template, ticket id plus the rendered text.
SANDBOX_PUSH_KEYS = (
    "status.accepted",
    "status.assigned",
    "status.replied",
    "status.resolved",
    "status.redispatched",
    "status.rejected",
    "status.merged",
    "status.more_info",
    "survey.ask",
    "survey.reminder",
)
_SANDBOX_PUSH_TEMPLATE = {
    "template_id": "TPL_SANDBOX_STATUS",
    "fields": {"character_string1": "{ticket_id}", "thing2": "{text}"},
}

SANDBOX_RAW: dict[str, Any] = {
    "accounts": [SANDBOX_ACCOUNT],
    "scenes": {
        "grid": {"intake": "citizen", "attr": "grid"},
        "centre": {"intake": "citizen", "attr": "centre"},
        "unit": {"intake": "citizen", "attr": "unit"},
        "enterprise": {"intake": "enterprise"},
    },
    "templates": {
        "ticket-created": {
            "template_id": "TPL_SANDBOX_CREATED",
            "fields": {"character_string1": "{ticket_id}", "thing2": "{text}"},
        },
        "status": {
            "template_id": "TPL_SANDBOX_STATUS",
            "fields": {"character_string1": "{ticket_id}", "phrase2": "{status}", "thing3": "{text}"},
        },
        **{key: _SANDBOX_PUSH_TEMPLATE for key in SANDBOX_PUSH_KEYS},
    },
    "menu": [
        {"name": "我要反映", "key": "new_report", "command": "new_report"},
        {"name": "我的工单", "key": "my_tickets", "command": "my_tickets"},
        {"name": "帮助", "key": "help", "command": "help"},
    ],
}


def sandbox_settings(
    data_dir: Path, api_base: str, overrides: Mapping[str, Any] | None = None
) -> WeChatSettings:
    """The sandbox values of DESIGN.md's table, pointed at the loopback fake at ``api_base``.
    ``overrides`` is the config's ``[wechat]`` table: "a config.toml overrides any of them"
    (DESIGN.md), e.g. ``reply_budget_s``; its ``api_base`` never wins over the fake's.
    ``data_dir`` is accepted for symmetry with the other channels (the fake records there)."""
    del data_dir
    return parse_settings({**SANDBOX_RAW, **(overrides or {}), "api_base": api_base}, "wechat")
