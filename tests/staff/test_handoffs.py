"""Hand-off to a human, end to end on the real Valkey: a citizen's 人工 through gateway.intake
puts them on the staff queue with their words, a staff reply reaches the outbox addressed to them,
and closing gives the conversation back to the bot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote

from channels.base import Inbound, InboundKind, Purpose
from conversation.catalogue import SMS_MAX_CHARS, Catalogue
from conversation.settings import default_settings
from gateway.config import TenantSettings
from gateway.intake import Intake
from gateway.rendering import Renderer
from store import keys
from store.apply import TenantIds
from store.casestore import CaseStore
from tests.staff.conftest import Api, outbox_entries

WX = "wechat:wxsandbox000000000:o_handoff_citizen"
PATH = f"/handoffs/{quote(WX, safe='')}"


def intake_for(api: Api) -> Intake:
    store = CaseStore(api.ctx.redis, clock=api.clock, tenants={"default": TenantIds()})
    return Intake(
        api.ctx.redis, store, default_settings(), Catalogue.load(), TenantSettings(), clock=api.clock
    )


def says(body: str, msg_id: str) -> Inbound:
    return Inbound(
        channel="wechat",
        account="gh_sandbox",
        sender=WX,
        external_id=f"wx:handoff:{msg_id}",
        kind=InboundKind.TEXT,
        received_at=datetime.now(UTC),
        text=body,
    )


async def log_entries(api: Api) -> list[dict[str, object]]:
    return [json.loads(x) for x in await api.ctx.redis.lrange(keys.handoff_log("default", WX), 0, -1)]


async def test_handoff_reply_and_close(api: Api) -> None:
    intake = intake_for(api)
    await intake.handle(says("路灯坏了，晚上很黑", "1"))  # a draft is open: the bot asks where
    asked_at = api.clock.now
    await intake.handle(says("人工", "2"))
    api.clock.now += 60
    await intake.handle(says("灯杆编号是123", "3"))
    await intake.handle(says("人工", "4"))  # asking again keeps the first request time

    listing = await api.ok("supervisor", "GET", "/handoffs")
    [item] = listing["items"]
    assert (item["address"], item["channel"], item["since"]) == (WX, "wechat", asked_at)
    assert item["reason"] == "requested" and item["open_tickets"] == []
    assert [m["text"] for m in item["messages"]] == ["人工", "灯杆编号是123", "人工"]
    assert (await api.call("unit", "GET", "/handoffs"))[0] == 403
    assert (await api.call("supervisor", "POST", PATH + "/reply", {"text": "x"}))[0] == 403

    answer = "您好，我是值班员小王" + "维修" * 95  # 200 characters: SMS must cut it
    assert len(answer) == 200
    before = len(await outbox_entries(api))
    first = await api.call("dispatcher", "POST", PATH + "/reply", {"text": answer}, idem="r1")
    again = await api.call("dispatcher", "POST", PATH + "/reply", {"text": answer}, idem="r1")
    assert first[0] == 200 and again == first
    [sent] = (await outbox_entries(api))[before:]  # the repeat queued nothing
    assert (sent.recipient, sent.purpose, sent.key, sent.id) == (
        WX,
        Purpose.STAFF_REPLY,
        "handoff.reply",
        first[1]["outbound_id"],
    )
    assert sent.params["text"] == answer
    sms = Renderer(Catalogue.load()).render(sent, "sms").text
    assert len(sms) <= SMS_MAX_CHARS and "您好，我是值班员小王" in sms
    assert (await log_entries(api))[-1]["text"] == answer

    closed = await api.ok("dispatcher", "POST", PATH + "/close", {})
    assert closed["mode"] == "collecting"  # the draft the citizen had open picks up again
    assert (await api.ok("supervisor", "GET", "/handoffs"))["items"] == []
    assert (await api.call("dispatcher", "POST", PATH + "/reply", {"text": "x"}))[0] == 404
    assert (await api.call("dispatcher", "POST", PATH + "/close", {}))[0] == 404

    # The next message is the engine's again: no follow-up on the queue or in the log.
    logged = len(await log_entries(api))
    out = await intake.handle(says("在睢城街道人民路88号门口", "5"))
    assert await api.ctx.redis.zcard(keys.handoff_queue("default")) == 0
    assert len(await log_entries(api)) == logged
    assert await api.ctx.redis.hget(keys.address_state("default", WX), "handoff") == b"requested"
    state = json.loads(await api.ctx.redis.hget(keys.conversation("default", WX), "state") or b"{}")
    slots = {name: value[0] for name, value in state["slots"]}
    assert state["mode"] == "collecting" and "人民路88号" in slots.get("location", ""), state
    assert out.texts == () or all("工作人员会尽快回复" not in t for t in out.texts)


async def test_a_waiting_citizens_open_tickets_are_listed(api: Api) -> None:
    tid = await api.new_ticket()
    tel = "tel:+8613812345678"
    intake = intake_for(api)
    msg = Inbound(
        channel="sms", account="sandbox", sender=tel, external_id="sms:handoff:1",
        kind=InboundKind.TEXT, received_at=datetime.now(UTC), text="转人工",
    )  # fmt: skip
    await intake.handle(msg)
    [item] = (await api.ok("dispatcher", "GET", "/handoffs"))["items"]
    assert item["address"] == tel and item["channel"] == "sms" and item["open_tickets"] == [tid]


async def test_a_citizen_who_goes_back_to_the_bot_leaves_the_queue(api: Api) -> None:
    intake = intake_for(api)
    await intake.handle(says("路灯坏了，晚上很黑", "r1"))
    await intake.handle(says("人工", "r2"))
    assert await api.ctx.redis.zscore(keys.handoff_queue("default"), WX) is not None
    await intake.handle(says("继续", "r3"))  # back to self-service
    assert await api.ctx.redis.zscore(keys.handoff_queue("default"), WX) is None
    assert (await api.ok("dispatcher", "GET", "/handoffs"))["items"] == []
