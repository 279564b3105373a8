"""Account administration: parametric QR codes for entry points, and the account menu.

Used by ``sulai wechat qrcode`` and ``sulai wechat menu`` (PROTOCOLS.md A.7). A scene string
such as ``grid:0421`` becomes a ``QR_STR_SCENE`` code; a citizen who scans it arrives with the
scene as their entry point (``subscribe`` with ``qrscene_<scene>``, or ``SCAN``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from channels.wechat.api import WeChatApi
from channels.wechat.settings import MenuButton

MAX_TEMPORARY_S = 2_592_000  # 30 days, WeChat's ceiling for temporary codes


class TokenMemory:
    """A process-local TokenCache for one-shot CLI commands. Safe only with ``stable_token``,
    which hands out the token the gateway processes already share instead of replacing it."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], str] = {}

    async def get(self, tenant: str, appid: str) -> str | None:
        return self._tokens.get((tenant, appid))

    async def refresh(self, tenant: str, appid: str, fetch: Any, stale: str | None) -> str:
        current = self._tokens.get((tenant, appid))
        if current and current != stale:
            return current
        token, _expires = await fetch()
        self._tokens[(tenant, appid)] = token
        return str(token)


def qrcode_request(scene: str, expire_seconds: int | None) -> dict[str, Any]:
    """The qrcode/create body; ``expire_seconds`` None makes a permanent code."""
    if not 1 <= len(scene) <= 64:
        raise ValueError(f"scene must be 1–64 characters, got {len(scene)}")
    if expire_seconds is not None and not 60 <= expire_seconds <= MAX_TEMPORARY_S:
        raise ValueError(f"a temporary code lasts 60 s to 30 days, got {expire_seconds} s")
    prefix = "QR_" if expire_seconds is not None else "QR_LIMIT_"
    # The scene must sit under action_info, or WeChat reports EventKey qrscene_0 (A.7 pitfall).
    body: dict[str, Any] = {
        "action_name": prefix + "STR_SCENE",
        "action_info": {"scene": {"scene_str": scene}},
    }
    if expire_seconds is not None:
        body["expire_seconds"] = expire_seconds  # always set: the default is a mere 60 s
    return body


async def create_qrcode(
    api: WeChatApi, scene: str, expire_seconds: int | None, record: Path | None = None
) -> dict[str, Any]:
    """Create the code; returns WeChat's answer (ticket, url, expire_seconds) plus the scene,
    appended as a JSON line to ``record`` so the operator knows which code means what."""
    answer = await api.call("/cgi-bin/qrcode/create", qrcode_request(scene, expire_seconds))
    entry = {
        "scene": scene,
        "appid": api.appid,
        "ticket": answer.get("ticket", ""),
        "url": answer.get("url", ""),
        "expire_seconds": answer.get("expire_seconds"),
        "created_at": int(time.time()),
    }
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        with record.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


def write_png(url: str, out: Path) -> None:
    """Render the code's URL as a PNG (the showqrcode image lives on WeChat's host)."""
    import segno

    segno.make(url, error="m").save(str(out), kind="png", scale=8, border=4)


def menu_request(buttons: tuple[MenuButton, ...]) -> dict[str, Any]:
    def one(b: MenuButton) -> dict[str, Any]:
        if b.sub_buttons:
            return {"name": b.name, "sub_button": [one(s) for s in b.sub_buttons]}
        if b.type == "view":
            return {"type": "view", "name": b.name, "url": b.url}
        return {"type": "click", "name": b.name, "key": b.key}

    if not 1 <= len(buttons) <= 3:
        raise ValueError(f"a WeChat menu has 1–3 top-level buttons, got {len(buttons)}")
    return {"button": [one(b) for b in buttons]}


async def set_menu(api: WeChatApi, buttons: tuple[MenuButton, ...]) -> None:
    await api.call("/cgi-bin/menu/create", menu_request(buttons))
