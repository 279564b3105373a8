"""Shared runner for the WeChat channel tests: settings with one account per encryption mode,
an adapter on the real Valkey state and the loopback fake WeChat API, and a push helper that
signs fixtures the way WeChat does (through the simulator's signing code)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from channels.base import MediaRef, Route, WebhookRequest, WebhookResult
from channels.wechat.adapter import WeChatAdapter
from channels.wechat.fake import FakeWeChat, start_fake
from channels.wechat.settings import WeChatSettings, parse_settings
from channels.wechat.simulator import WeChatSimulator
from store.wechat_state import RedisWeChatState

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "wechat" / "fixtures"
NOW = 1764000000  # the CreateTime of every fixture
KEY_A = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
KEY_B = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
KEY_OTHER = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
MODES = ("plaintext", "compatible", "safe")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8").strip()


def raw_settings(**overrides: Any) -> dict[str, Any]:
    accounts = [
        {
            "name": "plain",
            "account_id": "gh_test",
            "appid": "wxplain",
            "secret": "s-plain",
            "token": "tok-plain",
        },
        {
            "name": "compat",
            "account_id": "gh_test",
            "appid": "wxcompat",
            "secret": "s-compat",
            "token": "tok-compat",
            "encoding_aes_key": KEY_A,
            "mode": "compatible",
        },
        {
            "name": "safe",
            "account_id": "gh_test",
            "appid": "wxsafe",
            "secret": "s-safe",
            "token": "tok-safe",
            "encoding_aes_key": KEY_B,
            "previous_encoding_aes_key": KEY_A,
            "mode": "safe",
        },
    ]
    raw: dict[str, Any] = {
        "accounts": accounts,
        "scenes": {
            "grid": {"intake": "citizen", "attr": "grid"},
            "centre": {"intake": "citizen", "attr": "centre"},
            "enterprise": {"intake": "enterprise"},
        },
        "templates": {
            "status": {
                "template_id": "TPL_STATUS",
                "fields": {"character_string1": "{ticket_id}", "phrase2": "{status}", "thing3": "{text}"},
            }
        },
        "subscriptions": {
            "survey": {"template_id": "SUB_STATUS", "fields": {"thing1": "{text}"}, "page": "pages/survey"}
        },
        "menu": [{"name": "我的工单", "key": "my_tickets", "command": "my_tickets"}],
    }
    raw.update(overrides)
    return raw


MODE_ACCOUNT = {"plaintext": "plain", "compatible": "compat", "safe": "safe"}


@dataclass
class Clock:
    now: float = NOW + 5

    def __call__(self) -> float:
        return self.now


@dataclass
class MediaShelf:
    """A real (in-memory) media sink: content-addressed like the media store."""

    items: dict[str, bytes] = field(default_factory=dict)

    async def __call__(self, body: bytes, content_type: str, filename: str) -> MediaRef:
        media_id = hashlib.sha256(body).hexdigest()[:24]
        self.items[media_id] = body
        return MediaRef(media_id, content_type, len(body), filename)


@dataclass
class Kit:
    settings: WeChatSettings
    adapter: WeChatAdapter
    fake: FakeWeChat
    state: RedisWeChatState
    clock: Clock
    shelf: MediaShelf
    session: aiohttp.ClientSession
    base_url: str

    def account(self, mode: str) -> Any:
        return next(a for a in self.settings.accounts if a.name == MODE_ACCOUNT[mode])

    def simulator(
        self, mode: str, *, aes_key: str | None = None, appid: str | None = None
    ) -> WeChatSimulator:
        a = self.account(mode)
        return WeChatSimulator(
            "http://unused" + a.path,
            token=a.token,
            appid=appid or a.appid,
            account_id=a.account_id,
            encoding_aes_key=a.encoding_aes_key if aes_key is None else aes_key,
            mode=mode,
            clock=self.clock,
        )

    def request(self, mode: str, query: dict[str, str], body: bytes, method: str = "POST") -> WebhookRequest:
        path = self.account(mode).path
        return WebhookRequest(method, path, "http://127.0.0.1:8080" + path, query, {}, body)

    async def post(
        self, mode: str, query: dict[str, str], body: bytes, method: str = "POST"
    ) -> WebhookResult:
        path = self.account(mode).path
        return await self.adapter.parse_webhook(
            Route(method, path, "t"), self.request(mode, query, body, method)
        )

    async def push(self, mode: str, xml: str, **sim: Any) -> WebhookResult:
        query, body = self.simulator(mode, **sim).sign(xml)
        return await self.post(mode, query, body)


@asynccontextmanager
async def make_kit(redis: aioredis.Redis, tmp: Path, **overrides: Any) -> AsyncIterator[Kit]:
    settings = parse_settings(raw_settings(**overrides))
    clock = Clock()
    fake = FakeWeChat(
        {a.appid: a.secret for a in settings.accounts}, sent_log=tmp / "wechat-sent.jsonl", clock=clock
    )
    runner, base_url = await start_fake(fake)
    session = aiohttp.ClientSession()
    state = RedisWeChatState(redis)
    shelf = MediaShelf()
    adapter = WeChatAdapter(
        settings,
        replay=state,
        tokens=state,
        addresses=state,
        media_sink=shelf,
        session=session,
        api_base=base_url,
        clock=clock,
    )
    try:
        yield Kit(settings, adapter, fake, state, clock, shelf, session, base_url)
    finally:
        await adapter.close()
        await session.close()
        await runner.cleanup()
