"""WeChat end to end: the real gateway (in-process `serve --sandbox`) on the real test Valkey,
with the loopback fake WeChat API and fake Twilio recording what they were "sent".

Time is a TestClock shared by the gateway and the simulator (WeChat signs pushes with its own
clock; the adapter checks them against ours), started on a Wednesday morning in the tenant's
zone so no push lands in quiet hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import redis.asyncio as aioredis

from channels.base import tel_address, wechat_address
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER
from channels.sms.simulator import TwilioSimulator
from channels.wechat.settings import Account, sandbox_settings
from channels.wechat.simulator import WeChatSimulator
from gateway.config import settings_from_mapping
from gateway.staff.auth import create_staff
from gateway.testing import TestClock as Clock  # "Test…" names would be collected by pytest
from gateway.testing import running_gateway
from store import keys
from store.casestore import CaseStore
from store.ticketid import parse_ticket_id

TENANT = "default"
START = datetime(2025, 11, 26, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
PHONE = "13812345678"
E164 = "+8613812345678"
TICKET_ID = re.compile(r"SN-\d{6}-\d{4}-\d")
ACCOUNT: Account = sandbox_settings(Path("."), "http://unused").accounts[0]


@dataclass
class Sandbox:
    addresses: dict[str, str]
    sim: WeChatSimulator
    session: aiohttp.ClientSession
    data_dir: Path
    clock: Clock

    def wechat_sent(self) -> list[dict[str, Any]]:
        return _lines(self.data_dir / "sandbox" / "wechat-sent.jsonl")

    def sms_sent(self) -> list[dict[str, Any]]:
        return _lines(self.data_dir / "sandbox" / "sms-sent.jsonl")


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@contextlib.asynccontextmanager
async def sandbox(
    data_dir: Path, valkey_url: str, clock: Clock, mode: str = "safe", **wechat: object
) -> AsyncIterator[Sandbox]:
    raw: dict[str, object] = {"data_dir": str(data_dir), "redis": {"url": valkey_url}}
    if wechat:
        raw["wechat"] = dict(wechat)
    settings = settings_from_mapping(raw, env={})
    async with running_gateway(settings, clock=clock) as addresses, aiohttp.ClientSession() as session:
        sim = WeChatSimulator(
            addresses["public"] + ACCOUNT.path,
            token=ACCOUNT.token,
            appid=ACCOUNT.appid,
            account_id=ACCOUNT.account_id,
            encoding_aes_key=ACCOUNT.encoding_aes_key,
            mode=mode,
            session=session,
            clock=clock,
        )
        yield Sandbox(addresses, sim, session, data_dir, clock)


async def eventually(probe: Callable[[], Any], what: str, within_s: float = 10.0) -> Any:
    """Poll ``probe`` until it returns something truthy (the dispatcher works in the background)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        found = probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen within {within_s}s: {what}")
        await asyncio.sleep(0.05)


def ticket_id_in(text: str | None) -> str:
    assert text is not None, "expected a passive reply with the ticket id"
    found = TICKET_ID.search(text)
    assert found, f"no ticket id in {text!r}"
    return parse_ticket_id(found.group(0))


async def draft_ready(sb: Sandbox, openid: str) -> None:
    """Description, address and phone given: the next "1" files the ticket."""
    for text in ("我家门口的路灯坏了三天了", "睢城街道人民路88号", PHONE):
        reply = await sb.sim.push(sb.sim.text(openid, text))
        assert reply.status == 200
    assert reply.text is not None and "确认提交" in reply.text


async def file_ticket(sb: Sandbox, openid: str) -> str:
    await draft_ready(sb, openid)
    return ticket_id_in((await sb.sim.push(sb.sim.text(openid, "1"))).text)


async def queued_outbound(redis: aioredis.Redis) -> int:
    return int(await redis.xlen(keys.outbox(TENANT))) + int(await redis.zcard(keys.outbox_delayed(TENANT)))


async def staff_accepts(sb: Sandbox, redis: aioredis.Redis, ticket_id: str) -> None:
    _, token = await create_staff(redis, TENANT, "调度员", "dispatcher", now=sb.clock())
    async with sb.session.post(
        f"{sb.addresses['staff']}/api/v1/tickets/{ticket_id}/accept",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"accept-{ticket_id}"},
        json={},
    ) as resp:
        assert resp.status == 200, await resp.text()


# --- the scenarios -------------------------------------------------------------------------------


async def test_a_citizen_scanning_grid_0421_files_a_ticket_that_records_the_grid(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_grid_0421_citizen"
    async with sandbox(data_dir, valkey_url, Clock(START)) as sb:
        welcome = await sb.sim.push(sb.sim.subscribe(openid, "grid:0421"))
        assert welcome.text is not None and "欢迎" in welcome.text
        asks_where = await sb.sim.push(sb.sim.text(openid, "我家门口的路灯坏了三天了"))
        assert asks_where.text is not None and "地址" in asks_where.text
        asks_phone = await sb.sim.push(sb.sim.text(openid, "睢城街道人民路88号"))
        assert asks_phone.text is not None and "电话" in asks_phone.text
        summary = await sb.sim.push(sb.sim.text(openid, PHONE))
        assert summary.text is not None and "人民路88号" in summary.text and PHONE in summary.text
        filed = await sb.sim.push(sb.sim.text(openid, "1"))
        ticket_id = ticket_id_in(filed.text)
        assert filed.attempts == 1  # answered within WeChat's 5 s, no re-delivery

        ticket = await CaseStore(redis_client).get_ticket(TENANT, ticket_id)
        assert ticket is not None
        assert ticket.entry_point == "grid:0421"
        assert ticket.channel == "wechat"
        assert ticket.citizen == wechat_address(ACCOUNT.appid, openid)
        assert ticket.phone.endswith(PHONE) and "人民路88号" in ticket.location_text
        # Every answer went back passively: nothing queued, nothing sent through the API.
        assert await queued_outbound(redis_client) == 0
        assert sb.wechat_sent() == []


async def test_a_reply_past_the_budget_is_acked_with_success_and_sent_as_customer_service(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_slow_path_citizen"
    # A budget no turn can meet: the webhook must answer `success` and route the reply.
    async with sandbox(data_dir, valkey_url, Clock(START), reply_budget_s=0.001) as sb:
        answer = await sb.sim.push(sb.sim.text(openid, "我家门口的路灯坏了三天了"))
        assert (answer.status, answer.body, answer.text) == (200, b"success", None)

        def custom_sends() -> list[dict[str, Any]]:
            return [
                s
                for s in sb.wechat_sent()
                if s["endpoint"] == "message/custom/send" and s["body"]["touser"] == openid
            ]

        sends = await eventually(custom_sends, "the reply as a customer-service message")
        assert len(sends) == 1
        assert sends[0]["body"]["msgtype"] == "text" and "地址" in sends[0]["body"]["text"]["content"]
        await asyncio.sleep(0.3)  # nothing else trickles out after it
        assert len(custom_sends()) == 1


async def test_a_retry_of_the_same_msgid_while_the_first_is_in_flight_makes_one_effect_one_reply(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_retry_citizen"
    store = CaseStore(redis_client)
    async with sandbox(data_dir, valkey_url, Clock(START)) as sb:
        await draft_ready(sb, openid)
        # WeChat re-delivers the very same signed push (same MsgId, nonce and body); fire both
        # at once. The second finds the first in flight (bare `success`) or, if the first already
        # finished, its stored answer: never a second ticket, never a different answer.
        query, body = sb.sim.sign(sb.sim.text(openid, "1"))
        filing = await asyncio.gather(sb.sim.post(query, body), sb.sim.post(query, body))
        texts = {r.text for r in filing if r.text is not None}
        assert len(texts) == 1, f"exactly one answer for the filing push, got {texts}"
        ticket_id = ticket_id_in(texts.pop())
        citizen = wechat_address(ACCOUNT.appid, openid)
        assert (await store.list_tickets(TENANT, "citizen", citizen))[0] == [ticket_id]

        in_flight = 0
        for n in range(3):  # follow-up messages: each is appended once, answered once
            query, body = sb.sim.sign(sb.sim.text(openid, f"补充第{n + 1}条：晚上整条街都是黑的"))
            pair = await asyncio.gather(sb.sim.post(query, body), sb.sim.post(query, body))
            answered = [r for r in pair if r.text is not None]
            acked = [r for r in pair if r.text is None]
            assert answered and all(r.status == 200 for r in pair)
            if acked:
                assert acked[0].body == b"success"
                in_flight += 1
            supplements = [e for e in await store.timeline(TENANT, ticket_id) if e.kind == "supplement"]
            assert len(supplements) == n + 1
        assert in_flight >= 1, "no retry ever arrived while the first delivery was in flight"
        # No second copy of any answer went through the outbox.
        assert await queued_outbound(redis_client) == 0
        await asyncio.sleep(0.3)
        assert sb.wechat_sent() == []
        assert (await store.list_tickets(TENANT, "citizen", citizen))[0] == [ticket_id]


async def test_a_status_push_three_days_later_goes_out_as_a_template_message(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_template_citizen"
    clock = Clock(START)
    async with sandbox(data_dir, valkey_url, clock) as sb:
        ticket_id = await file_ticket(sb, openid)
        clock.advance(3 * 86400)  # the 48-hour customer-service window has closed
        await staff_accepts(sb, redis_client, ticket_id)

        def templates() -> list[dict[str, Any]]:
            return [s for s in sb.wechat_sent() if s["endpoint"] == "message/template/send"]

        sent = await eventually(templates, "the status push as a template message")
        body = sent[0]["body"]
        assert body["touser"] == openid and body["template_id"] == "TPL_SANDBOX_STATUS"
        assert body["data"]["character_string1"]["value"] == ticket_id
        thing = body["data"]["thing2"]["value"]
        assert "\n" not in thing and len(thing) <= 20  # WeChat's template field rules
        assert [s for s in sb.wechat_sent() if s["endpoint"] == "message/custom/send"] == []


async def test_a_push_after_unsubscribe_goes_to_the_phone_the_citizen_gave(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_unsubscribed_citizen"
    async with sandbox(data_dir, valkey_url, Clock(START)) as sb:
        ticket_id = await file_ticket(sb, openid)
        gone = await sb.sim.push(sb.sim.unsubscribe(openid))
        assert (gone.status, gone.body) == (200, b"success")
        await staff_accepts(sb, redis_client, ticket_id)

        sms = await eventually(
            lambda: [m for m in sb.sms_sent() if m["to"] == E164], "the push by SMS to the citizen's phone"
        )
        assert ticket_id in sms[0]["body"]
        assert sb.wechat_sent() == []  # WeChat was not even tried: the address is unreachable


async def test_a_push_with_no_reachable_address_left_is_recorded_undeliverable(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_unreachable_everywhere"
    async with sandbox(data_dir, valkey_url, Clock(START)) as sb:
        ticket_id = await file_ticket(sb, openid)
        await sb.sim.push(sb.sim.unsubscribe(openid))
        # The same citizen also opted out of SMS pushes from their phone.
        twilio = TwilioSimulator(
            sb.addresses["public"],
            SANDBOX_ACCOUNT_SID,
            SANDBOX_AUTH_TOKEN,
            SANDBOX_NUMBER,
            session=sb.session,
        )
        status, _ = await twilio.text(E164, "退订")
        assert status == 200
        await staff_accepts(sb, redis_client, ticket_id)

        letters: Any = []
        for _ in range(200):  # up to 10 s: the dispatcher tries WeChat, then SMS, then gives up
            letters = await redis_client.xrange(keys.outbox_dead(TENANT))
            if letters:
                break
            await asyncio.sleep(0.05)
        assert len(letters) == 1, "the push is dead-lettered, not lost and not retried forever"
        fields = letters[0][1]
        assert b"undeliverable" in fields[b"why"]
        envelope = json.loads(fields[b"o"])
        assert ticket_id in json.dumps(envelope, ensure_ascii=False)
        # Neither channel carried it (the opt-out confirmation SMS is the only SMS).
        assert sb.wechat_sent() == []
        assert [m for m in sb.sms_sent() if ticket_id in m["body"]] == []
        assert await redis_client.hget(keys.address_state(TENANT, tel_address(E164)), "opted_out") == b"1"


async def test_a_captured_signature_replayed_with_another_body_is_refused_and_opens_no_window(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    openid = "o_replay_target"
    clock = Clock(START)
    address = wechat_address(ACCOUNT.appid, openid)
    async with sandbox(data_dir, valkey_url, clock, mode="plaintext") as sb:
        query, body = sb.sim.sign(sb.sim.text(openid, "我家门口的路灯坏了三天了"))
        assert (await sb.sim.post(query, body)).text is not None
        opened = await redis_client.hget(keys.address_state(TENANT, address), "wx_last_in")
        assert opened is not None and float(opened) == int(START)

        clock.advance(60)  # a later forged message under the captured signature and nonce
        forged = sb.sim.text(openid, "我要反映").encode()
        refused = await sb.sim.post(query, forged)
        assert refused.status == 403 and b"nonce" in refused.body
        after = await redis_client.hget(keys.address_state(TENANT, address), "wx_last_in")
        assert after == opened
