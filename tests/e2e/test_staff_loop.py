"""The kit of the staff-loop end-to-end tests (issue 7; the scenarios are in
``test_staff_loop_*.py``; this module has no tests of its own).

Everything is real: the whole gateway (`serve --sandbox`, in-process) on the test Valkey, the
staff API over HTTP with tokens made by ``gateway.staff.auth``, the citizen's messages through the
channel simulators (signed WeChat pushes, signed Twilio webhooks, mail by SMTP to the gateway's
listener), and what the citizen received read back from the loopback fakes' records
(``<data-dir>/sandbox/wechat-sent.jsonl``, ``sms-sent.jsonl``, ``mail-sent/*.eml``). Only time is
ours: a TestClock shared by gateway and simulators, started on a weekday morning in the tenant's
zone (pushes outside quiet hours go out at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp
import redis.asyncio as aioredis

from channels.base import tel_address, wechat_address
from channels.email.settings import SANDBOX_ADDRESS as EMAIL_HOTLINE
from channels.email.simulator import citizen_mail, send_mail
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER
from channels.sms.simulator import TwilioSimulator
from channels.wechat.settings import sandbox_settings as wechat_sandbox
from channels.wechat.simulator import WeChatSimulator
from conversation.catalogue import Catalogue
from gateway.config import settings_from_mapping
from gateway.staff.auth import Role, create_staff
from gateway.testing import TestClock as Clock  # "Test…" names would be collected by pytest
from gateway.testing import running_gateway
from store.ticketid import parse_ticket_id

TENANT = "default"
ZONE = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 11, 25, 10, 0, tzinfo=ZONE).timestamp()  # a Wednesday, 10:00 local
TICKET_ID = re.compile(r"SN-\d{6}-\d{4}-\d")
CATALOGUE = Catalogue.load(default_language="zh-CN")
WECHAT = wechat_sandbox(Path("."), "http://unused").accounts[0]
UNIT_A, UNIT_B = "城管局", "住建局"
DESCRIPTION = "人民路88号门口的路灯坏了三天了，晚上一片漆黑"
LOCATION = "睢城街道人民路88号"
PHONE = "13812345678"
STAFF_STEP_S = 60.0


def text_of(key: str, variant: str, **params: str) -> str:
    return CATALOGUE.render(key, params, "zh-CN", variant)


async def until(probe: Callable[[], Awaitable[Any]], what: str, within_s: float = 10.0) -> Any:
    """Poll ``probe`` until it returns something truthy (dispatcher and scheduler run in the
    background, on real time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not seen within {within_s}s: {what}; last {value!r}")
        await asyncio.sleep(0.05)


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- what the citizen received ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message a fake provider delivered to the citizen: ``how`` is the provider path
    (custom / template for WeChat, sms, email), ``text`` what the citizen reads."""

    how: str
    text: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


class Citizen(Protocol):
    """A citizen on one channel. ``inline``: the engine's answers come back in the webhook's
    response (WeChat passive reply, TwiML), as ``say`` returns them; otherwise (email) they
    arrive as messages, like pushes."""

    channel: str
    inline: bool

    @property
    def address(self) -> str: ...

    async def file(self) -> str: ...

    async def say(self, text: str) -> list[str]: ...

    def received(self) -> list[Received]: ...

    def shows(self, got: Received, key: str, **params: str) -> bool:
        """Whether ``got`` is catalogue message ``key`` as this channel renders it."""
        ...


@dataclass
class WeChatCitizen:
    sim: WeChatSimulator
    data_dir: Path
    openid: str = "o_staff_loop_citizen"
    channel: str = "wechat"
    inline: bool = True

    def shows(self, got: Received, key: str, **params: str) -> bool:
        if got.how == "template":  # fields cut to 20 characters: the ticket id identifies it
            return bool(got.raw["body"]["data"]["character_string1"]["value"] == params["ticket_id"])
        return got.text == text_of(key, "text", **params)

    @property
    def address(self) -> str:
        return wechat_address(WECHAT.appid, self.openid)

    async def say(self, text: str) -> list[str]:
        reply = await self.sim.push(self.sim.text(self.openid, text))
        assert reply.status == 200, reply
        return [reply.text] if reply.text is not None else []

    async def file(self) -> str:
        for text in (DESCRIPTION, LOCATION, PHONE):
            answer = await self.say(text)
        assert answer and "确认提交" in answer[0], answer
        filed = await self.say("1")
        found = TICKET_ID.search(filed[0]) if filed else None
        assert found, filed
        return parse_ticket_id(found.group(0))

    def received(self) -> list[Received]:
        out = []
        for r in jsonl(self.data_dir / "sandbox" / "wechat-sent.jsonl"):
            body = r["body"]
            if body.get("touser") != self.openid:
                continue
            if r["endpoint"] == "message/custom/send":
                out.append(Received("custom", body["text"]["content"], r))
            elif r["endpoint"] == "message/template/send":
                out.append(Received("template", body["data"]["thing2"]["value"], r))
        return out


@dataclass
class SmsCitizen:
    sim: TwilioSimulator
    data_dir: Path
    number: str = "+8613812345678"
    channel: str = "sms"
    inline: bool = True

    def shows(self, got: Received, key: str, **params: str) -> bool:
        return got.text == text_of(key, "sms", **params)

    @property
    def address(self) -> str:
        return tel_address(self.number)

    async def say(self, text: str) -> list[str]:
        status, twiml = await self.sim.text(self.number, text)
        assert status == 200, twiml
        root = ET.fromstring(twiml)
        return [m.text or "" for m in root.iter("Message")]

    async def file(self) -> str:
        for text in ("你好", DESCRIPTION, LOCATION):
            answer = await self.say(text)
        assert answer and "回复1确认提交" in answer[-1], answer
        filed = await self.say("1")
        found = TICKET_ID.search(filed[0]) if filed else None
        assert found, filed
        return parse_ticket_id(found.group(0))

    def received(self) -> list[Received]:
        sent = jsonl(self.data_dir / "sandbox" / "sms-sent.jsonl")
        return [Received("sms", r["body"], r) for r in sent if r["to"] == self.number]


@dataclass
class EmailCitizen:
    """Writes to the hotline by SMTP (the gateway's own listener) and reads what the sandbox's
    relay sink wrote for them; replies thread under the last mail received, as a mail client's
    "Reply" does."""

    smtp: tuple[str, int]
    data_dir: Path
    mailbox: str = "zhangwei@example.com"
    channel: str = "email"
    inline: bool = False
    sent: list[str] = field(default_factory=list)  # Message-IDs of the citizen's mails

    @property
    def address(self) -> str:
        return f"mailto:{self.mailbox}"

    def shows(self, got: Received, key: str, **params: str) -> bool:
        return text_of(key, "email", **params) in got.text

    async def mail(self, subject: str, text: str, reply_to: Received | None = None) -> None:
        thread: dict[str, Any] = {}
        if reply_to is not None:
            mid = reply_to.raw["message_id"]
            thread = {"in_reply_to": mid, "references": [*reply_to.raw["references"], mid]}
        msg = citizen_mail(mail_from=self.mailbox, to=EMAIL_HOTLINE, subject=subject, text=text, **thread)
        await send_mail(*self.smtp, msg)
        self.sent.append(str(msg["Message-ID"]))

    async def say(self, text: str) -> list[str]:
        last = self.received()[-1]
        await self.mail(f"Re: {last.raw['subject']}", text, reply_to=last)
        return []

    async def file(self) -> str:
        await self.mail("路灯坏了", f"{DESCRIPTION}。地址：{LOCATION}。电话{PHONE}。")

        async def ack() -> Received | None:
            got = self.received()
            return got[0] if got else None

        first: Received = await until(ack, "the acknowledgement mail")
        found = TICKET_ID.search(first.raw["subject"])
        assert found and found.group(0) in first.text, first
        return parse_ticket_id(found.group(0))

    def received(self) -> list[Received]:
        out = []
        for path in sorted((self.data_dir / "sandbox" / "mail-sent").glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            if msg["Delivered-To"] != self.mailbox:
                continue
            body = msg.get_body(("plain",))
            assert body is not None
            raw = {
                "subject": str(msg["Subject"]),
                "message_id": str(msg["Message-ID"]),
                "in_reply_to": str(msg["In-Reply-To"] or ""),
                "references": str(msg["References"] or "").split(),
                "path": str(path),
            }
            text = body.get_content().replace("\r\n", "\n")  # SMTP line ends
            out.append(Received("email", text, raw))
        return out


# --- the running sandbox and the staff side ---------------------------------------------------------


@dataclass
class Loop:
    staff_url: str
    public_url: str
    addresses: dict[str, str]
    session: aiohttp.ClientSession
    redis: aioredis.Redis
    clock: Clock
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    staff_ids: dict[str, str] = field(default_factory=dict)
    _n: int = 0

    async def call(self, who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if method != "GET":
            # A minute passes between two clicks. (With time frozen, a number's send-rate bucket
            # at the fake Twilio would never refill, and backoff retries would never come due.)
            self.clock.advance(STAFF_STEP_S)
        self._n += 1
        headers = {"Authorization": f"Bearer {self.tokens[who]}", "Idempotency-Key": f"loop-{self._n}"}
        url = f"{self.staff_url}/api/v1{path}"
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def ok(self, who: str, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(who, method, path, body)
        assert status < 300, (who, method, path, status, data)
        return data

    async def detail(self, ticket_id: str) -> dict[str, Any]:
        return dict(await self.ok("supervisor", "GET", f"/tickets/{ticket_id}"))

    def wechat(self) -> WeChatCitizen:
        sim = WeChatSimulator(
            self.public_url + WECHAT.path,
            token=WECHAT.token,
            appid=WECHAT.appid,
            account_id=WECHAT.account_id,
            encoding_aes_key=WECHAT.encoding_aes_key,
            mode="safe",
            session=self.session,
            clock=self.clock,
        )
        return WeChatCitizen(sim, self.data_dir)

    def sms(self) -> SmsCitizen:
        sim = TwilioSimulator(
            self.public_url, SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER, session=self.session
        )
        return SmsCitizen(sim, self.data_dir)

    def email(self) -> EmailCitizen:
        host, _, port = self.addresses["smtp"].removeprefix("smtp://").rpartition(":")
        return EmailCitizen((host, int(port)), self.data_dir)

    async def pushes(self, citizen: Citizen, count: int, *, tick: bool = True) -> list[Received]:
        """Wait until the citizen has received ``count`` messages in all; return them.

        With ``tick`` the TestClock runs while we wait (a second per poll): the fake Twilio's
        per-number send rate is measured on the server's real clock, but the dispatcher schedules
        the retry of a rate-limited text on the gateway's clock, which must move for it to come due.
        """

        async def enough() -> list[Received] | None:
            got = citizen.received()
            if len(got) < count and tick:
                self.clock.advance(1)
            return got if len(got) >= count else None

        got: list[Received] = await until(enough, f"{count} messages to {citizen.address}")
        await asyncio.sleep(0.2)  # nothing beyond what was expected trickles out
        assert len(citizen.received()) == count, [r.text for r in citizen.received()]
        return got


STAFF = {
    "admin": (Role.ADMIN, ""),
    "dispatcher": (Role.DISPATCHER, ""),
    "unit_a": (Role.UNIT, UNIT_A),
    "unit_b": (Role.UNIT, UNIT_B),
    "supervisor": (Role.SUPERVISOR, ""),
    "viewer": (Role.VIEWER, ""),
}


@contextlib.asynccontextmanager
async def running_loop(
    data_dir: Path, valkey_url: str, redis: aioredis.Redis, clock: Clock, **config: Any
) -> AsyncIterator[Loop]:
    """The sandbox gateway with one token per role and the two units created through the API."""
    raw: dict[str, Any] = {"data_dir": str(data_dir), "redis": {"url": valkey_url}, **config}
    settings = settings_from_mapping(raw, env={})
    async with running_gateway(settings, clock=clock) as addresses, aiohttp.ClientSession() as session:
        loop = Loop(addresses["staff"], addresses["public"], addresses, session, redis, clock, data_dir)
        for who, (role, unit) in STAFF.items():
            member, token = await create_staff(redis, TENANT, f"{who}-name", role, unit, now=clock())
            loop.tokens[who], loop.staff_ids[who] = token, member.id
        for unit in (UNIT_A, UNIT_B):
            await loop.ok("admin", "POST", "/units", {"name": unit})
        yield loop
