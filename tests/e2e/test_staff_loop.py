"""The staff loop end to end (issue 7): a citizen files on their own channel, a dispatcher accepts
and assigns, the unit replies and resolves, the citizen hears each change, rates it unhappy with a
comment, the ticket goes back out to a second unit, is resolved again, rated 5 and closed.

Everything is real: the whole gateway (`serve --sandbox`, in-process) on the test Valkey, the
staff API over HTTP with tokens made by ``gateway.staff.auth``, the citizen's messages through the
channel simulators (signed WeChat pushes, signed Twilio webhooks), and what the citizen received
read back from the loopback fakes' records (``<data-dir>/sandbox/*-sent.jsonl``). Only time is
ours: a TestClock shared by gateway and simulators, started on a weekday morning in the tenant's
zone (pushes outside quiet hours go out at once).

This module also holds the kit the other ``test_staff_loop_*`` modules use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp
import redis.asyncio as aioredis

from channels.base import tel_address, wechat_address
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
    channel: str
    variant: str  # the catalogue variant the channel renders pushes with

    @property
    def address(self) -> str: ...

    async def file(self) -> str: ...

    async def say(self, text: str) -> list[str]: ...

    def received(self) -> list[Received]: ...


@dataclass
class WeChatCitizen:
    sim: WeChatSimulator
    data_dir: Path
    openid: str = "o_staff_loop_citizen"
    channel: str = "wechat"
    variant: str = "text"

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
    variant: str = "sms"

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


# --- the whole life of a ticket -----------------------------------------------------------------------


async def whole_life(loop: Loop, citizen: Citizen, *, template_after_48h: bool = False) -> str:
    v = citizen.variant
    ticket_id = await citizen.file()
    base = len(citizen.received())  # acknowledgements that travel as messages (email)
    listed = await loop.ok("dispatcher", "GET", "/tickets?status=new")
    assert [t["id"] for t in listed["items"]] == [ticket_id]

    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/accept", {})
    got = await loop.pushes(citizen, base + 1)
    assert got[-1].text == text_of("status.accepted", v, ticket_id=ticket_id)
    assign = {"unit": UNIT_A, "note": "请三日内修复", "due_date": "2026-11-28"}
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", assign)
    got = await loop.pushes(citizen, base + 2)
    assert UNIT_A in got[-1].text
    assert got[-1].text == text_of("status.assigned", v, ticket_id=ticket_id, unit=UNIT_A)
    # The other unit cannot see, let alone answer, a ticket that is not theirs.
    assert (await loop.call("unit_b", "GET", f"/tickets/{ticket_id}"))[0] == 404
    queue = await loop.ok("unit_a", "GET", f"/units/{UNIT_A}/queue")
    assert [t["id"] for t in queue["items"]] == [ticket_id]

    # Two days pass before the unit answers: WeChat's 48-hour window has closed by then.
    loop.clock.advance(49 * 3600)
    answer = "已安排维修人员，明天上午更换灯泡"
    await loop.ok("unit_a", "POST", f"/tickets/{ticket_id}/reply", {"text": answer})
    got = await loop.pushes(citizen, base + 3)
    if template_after_48h:
        assert got[-1].how == "template", got[-1]
        assert got[-1].raw["body"]["data"]["character_string1"]["value"] == ticket_id
    else:
        assert answer in got[-1].text
        assert got[-1].text == text_of("status.replied", v, ticket_id=ticket_id, unit=UNIT_A, text=answer)
    resolution = "路灯已更换，恢复照明"
    await loop.ok("unit_a", "POST", f"/tickets/{ticket_id}/resolve", {"resolution": resolution})
    got = await loop.pushes(citizen, base + 5)
    if template_after_48h:
        assert [g.how for g in got[-2:]] == ["template", "template"]
    else:
        assert sorted(g.text for g in got[-2:]) == sorted(
            [
                text_of("status.resolved", v, ticket_id=ticket_id, text=resolution),
                text_of("survey.ask", v, ticket_id=ticket_id),
            ]
        )

    # The citizen is not happy, and says why.
    assert await citizen.say("不满意") == [text_of("survey_thanks_low", v, ticket_id=ticket_id, rating="2")]
    got = await loop.pushes(citizen, base + 6)
    assert got[-1].text == text_of("status.redispatched", v, ticket_id=ticket_id, attempt="2")
    comment = "路灯还是不亮，晚上还是黑的"
    assert await citizen.say(comment) == [text_of("survey_comment_thanks", v, ticket_id=ticket_id)]
    ticket = await loop.detail(ticket_id)
    assert ticket["status"] == "redispatched" and ticket["attempts"] == 1
    assert ticket["failed_units"] == [UNIT_A] and ticket["unit"] == ""
    assert (ticket["rating"], ticket["rating_comment"]) == (2, comment)
    back = await loop.ok("dispatcher", "GET", "/tickets?status=redispatched")
    assert [t["id"] for t in back["items"]] == [ticket_id]

    # Second round: another unit takes it and resolves; the citizen is satisfied.
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", {"unit": UNIT_B, "note": comment})
    got = await loop.pushes(citizen, base + 7)
    assert got[-1].text == text_of("status.assigned", v, ticket_id=ticket_id, unit=UNIT_B)
    again = "线路老化已整体更换，经夜间查看照明正常"
    await loop.ok("unit_b", "POST", f"/tickets/{ticket_id}/resolve", {"resolution": again})
    got = await loop.pushes(citizen, base + 9)
    assert sorted(g.text for g in got[-2:]) == sorted(
        [
            text_of("status.resolved", v, ticket_id=ticket_id, text=again),
            text_of("survey.ask", v, ticket_id=ticket_id),
        ]
    )
    assert await citizen.say("5") == [text_of("survey_thanks", v, ticket_id=ticket_id, rating="5")]
    ticket = await loop.detail(ticket_id)
    assert (ticket["status"], ticket["rating"], ticket["attempts"]) == ("closed", 5, 1)
    assert ticket["failed_units"] == [UNIT_A] and ticket["unit"] == UNIT_B
    await loop.pushes(citizen, base + 9)  # closing sends nothing more
    return ticket_id


def who(loop: Loop, citizen: Citizen, actor: str) -> str:
    """An event's actor as the role that acted: citizen, system or the staff member's key."""
    if actor == f"citizen:{citizen.address}":
        return "citizen"
    members = {f"staff:{sid}": name for name, sid in loop.staff_ids.items()}
    return members.get(actor, actor)


async def check_timeline(loop: Loop, citizen: Citizen, ticket_id: str) -> list[dict[str, Any]]:
    """The detail's timeline holds the whole life, in order, each step with who did it; every
    push names its message and carries the outcome of its delivery."""
    timeline: list[dict[str, Any]] = (await loop.detail(ticket_id))["timeline"]
    steps = [(e["kind"], who(loop, citizen, e["actor"])) for e in timeline if e["kind"] != "push"]
    assert steps == [
        ("created", "citizen"),
        ("status", "dispatcher"),  # accepted
        ("status", "dispatcher"),  # assigned
        ("assigned", "dispatcher"),
        ("status", "unit_a"),  # replied
        ("reply", "unit_a"),
        ("status", "unit_a"),  # resolved
        ("resolution", "unit_a"),
        ("rating", "citizen"),
        ("status", "citizen"),  # redispatched
        ("redispatched", "citizen"),
        ("rating_comment", "citizen"),
        ("status", "dispatcher"),  # assigned again
        ("assigned", "dispatcher"),
        ("status", "unit_b"),  # resolved again
        ("resolution", "unit_b"),
        ("rating", "citizen"),
        ("status", "citizen"),  # closed
    ], steps
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in timeline if e["kind"] == "status"]
    assert moves == [
        ("new", "accepted"),
        ("accepted", "assigned"),
        ("assigned", "replied"),
        ("replied", "resolved"),
        ("resolved", "redispatched"),
        ("redispatched", "assigned"),
        ("assigned", "resolved"),
        ("resolved", "closed"),
    ]
    by_kind = {e["kind"]: e["payload"] for e in timeline if e["kind"] in ("reply", "redispatched")}
    assert by_kind["reply"]["text"] == "已安排维修人员，明天上午更换灯泡"
    assert (by_kind["redispatched"]["failed_unit"], by_kind["redispatched"]["attempt"]) == (UNIT_A, 2)
    ratings = [(e["payload"]["rating"], e["payload"]["unit"]) for e in timeline if e["kind"] == "rating"]
    assert ratings == [(2, UNIT_A), (5, UNIT_B)]
    pushes = [e for e in timeline if e["kind"] == "push"]
    assert [p["payload"]["key"] for p in pushes] == [
        "status.accepted",
        "status.assigned",
        "status.replied",
        "status.resolved",
        "status.redispatched",
        "status.assigned",
        "status.resolved",
    ]
    for p in pushes:
        assert p["actor"] == "system"
        assert p["delivery"]["status"] in ("sent", "delivered"), p
        assert p["delivery"]["recipient"] == citizen.address, p
    return pushes


async def check_stats(loop: Loop, channel: str) -> None:
    stats = await loop.ok("viewer", "GET", "/stats")
    assert (stats["received"], stats["by_channel"][channel], stats["in_progress"]) == (1, 1, 0)
    assert (stats["rated"], stats["satisfaction_rate"]) == (2, 0.5)
    units = {u["unit"]: (u["rated"], u["satisfied"]) for u in stats["by_unit"]}
    assert units == {UNIT_A: (1, 0), UNIT_B: (1, 1)}


async def test_wechat_citizen_whole_life(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.wechat()
        ticket_id = await whole_life(loop, citizen, template_after_48h=True)
        pushes = await check_timeline(loop, citizen, ticket_id)
        # Inside the 48-hour window pushes are customer-service messages; the reply and the
        # resolution two days later had to be template messages; the rating reopened the window.
        paths = [(p["payload"]["key"], p["delivery"]["path"]) for p in pushes]
        assert paths == [
            ("status.accepted", "custom"),
            ("status.assigned", "custom"),
            ("status.replied", "template"),
            ("status.resolved", "template"),
            ("status.redispatched", "custom"),
            ("status.assigned", "custom"),
            ("status.resolved", "custom"),
        ]
        template = next(r for r in citizen.received() if r.how == "template").raw["body"]
        assert template["template_id"] == "TPL_SANDBOX_STATUS"
        assert (
            "\n" not in template["data"]["thing2"]["value"] and len(template["data"]["thing2"]["value"]) <= 20
        )
        await check_stats(loop, "wechat")


async def test_sms_citizen_whole_life(data_dir: Path, valkey_url: str, redis_client: aioredis.Redis) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.sms()
        ticket_id = await whole_life(loop, citizen)
        await check_timeline(loop, citizen, ticket_id)
        await check_stats(loop, "sms")
        # Each text came from the platform's number, each within one Chinese segment or split.
        assert {r.raw["from"] for r in citizen.received()} == {SANDBOX_NUMBER}
