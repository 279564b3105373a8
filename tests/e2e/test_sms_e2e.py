"""SMS end to end: the sandbox gateway in-process on the test Valkey, the loopback fake Twilio
sending for it, and signed Twilio webhooks posted by the simulator over real HTTP.

Covers issue 5's end-to-end list: filing a ticket in a few texts, a status push with its status
callbacks, no survey for an opted-out number, 21610 at send time, and a burst from one number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import redis.asyncio as aioredis

from channels.sms.fake_twilio import FAKE_INFO_NAME
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER
from channels.sms.simulator import TwilioSimulator
from conversation.catalogue import Catalogue
from gateway import testing
from gateway.config import settings_from_mapping
from gateway.staff.auth import Role, create_staff
from gateway.testing import running_gateway
from store import keys
from store.casestore import CaseStore
from store.outbox import Outbox
from store.ticketid import parse_ticket_id

TENANT = "default"
# 10:00 on a weekday in the tenant's zone: outside quiet hours, so pushes go out at once.
MORNING = dt.datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
CITIZEN = "+8613812345678"
CATALOGUE = Catalogue.load(default_language="zh-CN")


def sms_text(key: str, **params: str) -> str:
    return CATALOGUE.render(key, params, "zh-CN", "sms")


def messages(twiml: str) -> list[str]:
    """The texts of a TwiML answer (Twilio sends one SMS per <Message>)."""
    root = ET.fromstring(twiml)
    assert root.tag == "Response", twiml
    return [m.text or "" for m in root.iter("Message")]


@dataclass
class Sandbox:
    sim: TwilioSimulator
    session: aiohttp.ClientSession
    public: str
    staff: str
    token: str
    redis: aioredis.Redis
    clock: testing.TestClock
    sent_path: Path

    async def text(self, sender: str, body: str) -> list[str]:
        status, answer = await self.sim.text(sender, body)
        assert status == 200, answer
        return messages(answer)

    async def file_ticket(self, sender: str = CITIZEN, phone: str = "") -> str:
        """Four texts, as a citizen types them, ending with the ticket id (five when the citizen
        corrects the contact number taken from the sender to another ``phone``)."""
        assert await self.text(sender, "你好") == [sms_text("ask_description")]
        assert await self.text(sender, "小区里垃圾堆了一个星期没人清理，味道很大") == [
            sms_text("ask_location")
        ]
        summary = await self.text(sender, "幸福家园小区3栋")
        if phone:
            summary = await self.text(sender, f"修改电话 {phone}")
            assert summary[0] == sms_text("corrected_phone", value=phone), summary
        assert "幸福家园小区3栋" in summary[-1] and "回复1确认提交" in summary[-1], summary
        filed = await self.text(sender, "1")
        assert len(filed) == 1 and filed[0].startswith("已受理，工单号"), filed
        ticket_id = filed[0].removeprefix("已受理，工单号").split("，")[0]
        assert parse_ticket_id(ticket_id) == ticket_id
        return ticket_id

    async def staff_call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": f"{method}{path}"}
        url = f"{self.staff}/api/v1{path}"
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            data = await resp.json()
            assert resp.status < 300, (resp.status, data)
            return data

    def sent_to(self, number: str) -> list[dict[str, str]]:
        if not self.sent_path.exists():
            return []
        lines = self.sent_path.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r["to"] == number]

    async def delivered_to(self, number: str) -> tuple[str, dict[str, str]] | None:
        """(outbound id, record) of the first message sent to ``number`` once it is delivered."""
        sent = self.sent_to(number)
        if not sent:
            return None
        raw = await self.redis.get(keys.provider_message(TENANT, "sms", sent[0]["sid"]))
        oid = raw.decode() if isinstance(raw, bytes) else ""
        record = await self.record(oid) if oid else {}
        return (oid, record) if record.get("status") == "delivered" else None

    async def fake_twilio(self, action: str, form: dict[str, str]) -> None:
        """Steer the sandbox's fake Twilio over its control routes (errors, delivery outcomes)."""
        info = json.loads((self.sent_path.parent / FAKE_INFO_NAME).read_text(encoding="utf-8"))
        auth = aiohttp.encode_basic_auth(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN)
        url = f"{info['base_url']}/_fake/{action}"
        async with self.session.post(url, data=form, headers={"Authorization": auth}) as resp:
            assert resp.status == 200, await resp.text()

    async def dead_keys(self) -> dict[str, str]:
        """Catalogue key -> why, of every dead letter."""
        dead, _ = await Outbox(self.redis).dead_letters(TENANT, limit=100)
        return {d.envelope.outbound.key: d.why for d in dead}

    async def record(self, outbound_id: str) -> dict[str, str]:
        return await Outbox(self.redis).record(TENANT, outbound_id)

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(f"{self.staff}/metrics") as resp:
            text = await resp.text()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and line.split("}")[0].count("=") == len(labels):
                got = ",".join(sorted(line[line.index("{") + 1 : line.index("}")].split(",")))
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


async def until(what: Callable[[], Awaitable[Any]], within_s: float = 10.0) -> Any:
    """Poll ``what`` until it returns something truthy (the dispatcher works in the background)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = await what()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; last value {value!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def sandbox(data_dir: Path, valkey_url: str, redis_client: aioredis.Redis) -> AsyncIterator[Sandbox]:
    settings = settings_from_mapping({"data_dir": str(data_dir), "redis": {"url": valkey_url}}, env={})
    clock = testing.TestClock(MORNING)
    _, token = await create_staff(redis_client, TENANT, "值班员", Role.DISPATCHER, now=clock.now)
    await redis_client.hset(keys.units(TENANT), "城管局", json.dumps({"name": "城管局"}))
    async with (
        running_gateway(settings, clock=clock) as addresses,
        aiohttp.ClientSession() as session,
    ):
        sim = TwilioSimulator(
            addresses["public"], SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER, session=session
        )
        yield Sandbox(
            sim,
            session,
            addresses["public"],
            addresses["staff"],
            token,
            redis_client,
            clock,
            data_dir / "sandbox" / "sms-sent.jsonl",
        )


async def test_a_citizen_files_a_ticket_in_four_texts(sandbox: Sandbox) -> None:
    ticket_id = await sandbox.file_ticket()
    ticket = await CaseStore(sandbox.redis).get_ticket(TENANT, ticket_id)
    assert ticket is not None
    assert ticket.channel == "sms" and ticket.citizen == f"tel:{CITIZEN}"
    assert ticket.description == "小区里垃圾堆了一个星期没人清理，味道很大"
    assert ticket.location_text == "幸福家园小区3栋" and ticket.phone == "13812345678"
    # Everything was answered inline (TwiML): the fake Twilio was asked to send nothing.
    assert sandbox.sent_to(CITIZEN) == []


async def test_a_status_push_is_delivered_and_its_callbacks_recorded(sandbox: Sandbox) -> None:
    ticket_id = await sandbox.file_ticket()
    await sandbox.staff_call("POST", f"/tickets/{ticket_id}/accept", {})
    oid, record = await until(lambda: sandbox.delivered_to(CITIZEN))
    [sent] = sandbox.sent_to(CITIZEN)
    assert sent["body"] == sms_text("status.accepted", ticket_id=ticket_id)
    assert sent["from"] == SANDBOX_NUMBER
    assert record["provider_id"] == sent["sid"] and record["channel"] == "sms"
    assert record["ticket_id"] == ticket_id
    # A late "sent" (callbacks arrive out of order) never moves the record back.
    late = {
        "AccountSid": SANDBOX_ACCOUNT_SID,
        "MessageSid": sent["sid"],
        "MessageStatus": "sent",
        "To": CITIZEN,
        "From": SANDBOX_NUMBER,
    }
    assert (await sandbox.sim.post(late, "/sms/twilio/status"))[0] == 200
    assert (await sandbox.record(oid))["status"] == "delivered"
    # The staff timeline shows the push as delivered.
    detail = await sandbox.staff_call("GET", f"/tickets/{ticket_id}")
    pushes = [e for e in detail["timeline"] if e["kind"] == "push"]
    assert [p["delivery"]["status"] for p in pushes if p["payload"]["key"] == "status.accepted"] == [
        "delivered"
    ]


async def test_an_opted_out_number_gets_no_survey(sandbox: Sandbox) -> None:
    ticket_id = await sandbox.file_ticket()
    assert await sandbox.text(CITIZEN, "STOP") == [sms_text("sms_opt_out")]
    await sandbox.staff_call("POST", f"/tickets/{ticket_id}/accept", {})
    await sandbox.staff_call("POST", f"/tickets/{ticket_id}/assign", {"unit": "城管局"})
    resolved = await sandbox.staff_call("POST", f"/tickets/{ticket_id}/resolve", {"resolution": "已清运"})
    assert resolved["status"] == "resolved"
    # The survey was queued, met the opt-out at the channel, and had nowhere else to go.
    dead = await until(lambda: _with(sandbox.dead_keys(), "survey.ask"))
    assert "opted-out" in dead["survey.ask"]
    assert {"status.accepted", "status.assigned", "status.resolved"} <= set(dead)
    assert sandbox.sent_to(CITIZEN) == []
    state = await sandbox.redis.hgetall(keys.address_state(TENANT, f"tel:{CITIZEN}"))
    assert state[b"opted_out"] == b"1"


async def _with(found: Awaitable[dict[str, str]], key: str) -> dict[str, str] | None:
    got = await found
    return got if key in got else None


async def test_21610_at_send_time_marks_the_number_opted_out(sandbox: Sandbox) -> None:
    unsubscribed = "+15005550004"  # Twilio's magic number: every send answers 21610
    ticket_id = await sandbox.file_ticket(unsubscribed, phone="13812345678")
    assert not await sandbox.redis.hget(keys.address_state(TENANT, f"tel:{unsubscribed}"), "opted_out")
    await sandbox.staff_call("POST", f"/tickets/{ticket_id}/accept", {})
    # The push goes on to the other number the citizen gave, with the route on the record.
    oid, record = await until(lambda: sandbox.delivered_to(CITIZEN))
    route, why = record["route"].split(" (", 1)
    assert route == f"tel:{unsubscribed} -> tel:{CITIZEN}"
    assert why.startswith("opted-out: Twilio 400/21610"), why
    assert oid.startswith(f"{ticket_id}:") and record["ticket_id"] == ticket_id
    state = await sandbox.redis.hgetall(keys.address_state(TENANT, f"tel:{unsubscribed}"))
    assert state[b"opted_out"] == b"1"
    assert sandbox.sent_to(unsubscribed) == []


async def test_a_burst_of_100_texts_is_limited_without_losing_the_first(sandbox: Sandbox) -> None:
    before = await sandbox.metric("sulai_flood_dropped_total", channel="sms")
    first = await sandbox.text(CITIZEN, "人民路88号路灯不亮三天了")
    assert len(first) == 1 and "人民路88号" in first[0] and "回复1确认提交" in first[0], first
    answers = [await sandbox.text(CITIZEN, f"还有第{n}条") for n in range(2, 101)]
    limit = 10  # the sandbox's per-number limit per window (channels/sms/settings.py default)
    assert all(a for a in answers[: limit - 1])  # within the limit: every text is answered
    assert answers[limit - 1] == [sms_text("flood_wait")]  # once, the first over the limit
    assert all(a == [] for a in answers[limit:])  # then silence
    assert await sandbox.metric("sulai_flood_dropped_total", channel="sms") - before == 100 - limit
    # A new window: the draft the first text started is still there and files the ticket.
    sandbox.clock.advance(61)
    filed = await sandbox.text(CITIZEN, "1")
    assert filed[0].startswith("已受理，工单号"), filed
    ticket_id = filed[0].removeprefix("已受理，工单号").split("，")[0]
    ticket = await CaseStore(sandbox.redis).get_ticket(TENANT, ticket_id)
    assert ticket is not None and ticket.location_text.startswith("人民路88号")


async def test_an_undelivered_push_goes_to_the_citizens_wechat(sandbox: Sandbox, data_dir: Path) -> None:
    from channels.wechat.settings import sandbox_settings as wechat_sandbox
    from channels.wechat.simulator import WeChatSimulator

    account = wechat_sandbox(data_dir, "http://unused").accounts[0]
    wechat = WeChatSimulator(
        sandbox.public + account.path,
        token=account.token,
        appid=account.appid,
        account_id=account.account_id,
        encoding_aes_key=account.encoding_aes_key,
        mode="safe",
        session=sandbox.session,
        clock=sandbox.clock,
    )
    # On WeChat the citizen gives their mobile number: the two addresses are now linked.
    await wechat.push(wechat.text("o_citizen_0002", "人民路88号路灯坏了三天了，电话13812345678"))
    assert (await wechat.push(wechat.text("o_citizen_0002", "1"))).text is not None
    # Later they text from that number; the carrier then fails the status push permanently.
    ticket_id = await sandbox.file_ticket()
    await sandbox.fake_twilio(
        "deliver_as", {"To": CITIZEN, "Statuses": "sent,undelivered", "ErrorCode": "30005"}
    )
    await sandbox.staff_call("POST", f"/tickets/{ticket_id}/accept", {})

    async def rerouted() -> dict[str, str] | None:
        sent = sandbox.sent_to(CITIZEN)
        raw = await sandbox.redis.get(keys.provider_message(TENANT, "sms", sent[0]["sid"])) if sent else None
        record = await sandbox.record(raw.decode()) if isinstance(raw, bytes) else {}
        return record if record.get("channel") == "wechat" else None

    record = await until(rerouted)
    openid_address = f"wechat:{account.appid}:o_citizen_0002"
    assert record["recipient"] == openid_address
    assert record["route"] == f"tel:{CITIZEN} -> {openid_address} (sms undelivered: 30005)"
    assert record["ticket_id"] == ticket_id
    assert len(sandbox.sent_to(CITIZEN)) == 1  # the dead number is not tried again
    state = await sandbox.redis.hgetall(keys.address_state(TENANT, f"tel:{CITIZEN}"))
    assert state[b"unreachable"] == b"1" and state[b"unreachable_why"] == b"sms:30005"
