"""The survey loop (resolve → survey pending → unsatisfied → re-dispatch → flagged after N),
expiry onto the call-back list, and quiet-hours deferral with a controllable clock."""

from __future__ import annotations

import datetime as dt

from channels.base import Outbound
from conversation.state import ConversationState
from gateway.staff import survey
from store import keys
from store.model import TicketStatus
from tests.staff.conftest import ZONE, Api, outbox_entries


async def conversation_state(api: Api, address: str) -> ConversationState:
    raw = await api.ctx.redis.hget(keys.conversation("default", address), "state")
    return ConversationState.from_json(raw)


async def outbox(api: Api) -> list[Outbound]:
    return await outbox_entries(api)


async def resolve(api: Api, tid: str, unit_member: str) -> None:
    await api.ok(unit_member, "POST", f"/tickets/{tid}/reply", {"text": "处理中"})
    await api.ok(unit_member, "POST", f"/tickets/{tid}/resolve", {"resolution": "已处理"})


async def test_unsatisfied_redispatches_and_flags_after_two(api: Api) -> None:
    tid = await api.assigned_ticket("城管局")
    await resolve(api, tid, "unit")
    state = await conversation_state(api, "tel:+8613812345678")
    assert state.pending_survey == tid
    assert (
        await api.ctx.redis.zscore(keys.timers("default"), f"survey-expiry:{tid}:1")
        == api.clock.now + 72 * 3600
    )

    after = (await survey.record_rating(api.ctx, tid, 2, "没修好", "citizen:tel:+8613812345678")).ticket
    assert after.status is TicketStatus.REDISPATCHED and after.attempts == 1
    assert after.failed_units == ("城管局",) and after.unit == "" and not after.supervision
    assert await api.ctx.cases.get_ticket("default", tid) == after  # the preview is what was written
    assert (await conversation_state(api, "tel:+8613812345678")).pending_survey is None
    assert await api.ctx.redis.zscore(keys.timers("default"), f"survey-expiry:{tid}:1") is None
    assert await api.ctx.redis.zscore(keys.supervision_queue("default"), tid) is None
    assert (await api.ok("dispatcher", "GET", "/tickets?status=redispatched"))["items"][0]["id"] == tid

    await api.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": "住建局"})
    await resolve(api, tid, "unit2")
    after = (await survey.record_rating(api.ctx, tid, 1, "还是没修", "citizen:tel:+8613812345678")).ticket
    assert after.attempts == 2 and after.failed_units == ("城管局", "住建局") and after.supervision
    assert await api.ctx.redis.zscore(keys.supervision_queue("default"), tid) is not None
    queue = await api.ok("supervisor", "GET", "/supervision")
    assert [(i["ticket"]["id"], i["ticket"]["supervision"]) for i in queue["items"]] == [(tid, True)]
    pushes = [o for o in await outbox(api) if o.key == "status.redispatched"]
    assert [o.params["attempt"] for o in pushes] == ["2", "3"]


async def test_satisfied_closes_and_counts(api: Api) -> None:
    tid = await api.assigned_ticket()
    await resolve(api, tid, "unit")
    after = (await survey.record_rating(api.ctx, tid, 5, "", "citizen")).ticket
    assert after.status is TicketStatus.CLOSED and after.rating == 5
    stats = await api.ok("viewer", "GET", "/stats")
    assert stats["satisfaction_rate"] == 1.0 and stats["resolved"] == 1 and stats["received"] == 1
    assert stats["by_channel"]["offline"] == 1
    unit = next(u for u in stats["by_unit"] if u["unit"] == "城管局")
    assert unit["rated"] == 1 and unit["satisfied"] == 1


async def test_expiry_closes_not_rated_and_callback_records_rating(api: Api) -> None:
    tid = await api.assigned_ticket()
    await resolve(api, tid, "unit")
    api.clock.now += 24 * 3600
    assert await survey.handle_timer(api.ctx, {"kind": survey.TIMER_REMINDER, "ticket_id": tid, "attempt": 1})
    api.clock.now += 48 * 3600
    assert await survey.handle_timer(api.ctx, {"kind": survey.TIMER_EXPIRY, "ticket_id": tid, "attempt": 1})
    detail = await api.ok("dispatcher", "GET", f"/tickets/{tid}")
    assert (detail["status"], detail["rating_state"]) == ("closed", survey.NOT_RATED)
    assert [o.key for o in await outbox(api)][-2:] == ["survey.reminder", "survey.closed_unrated"]
    assert (await conversation_state(api, "tel:+8613812345678")).pending_survey is None
    assert await api.ctx.redis.zscore(keys.timers("default"), f"survey-reminder:{tid}:1") is None
    callbacks = await api.ok("dispatcher", "GET", "/callbacks")
    assert [c["ticket"]["id"] for c in callbacks["items"]] == [tid]
    # A second expiry (timer fired twice) changes nothing.
    assert not await survey.handle_timer(
        api.ctx, {"kind": survey.TIMER_EXPIRY, "ticket_id": tid, "attempt": 1}
    )
    view = await api.ok(
        "dispatcher", "POST", f"/callbacks/{tid}", {"reached": True, "rating": 4, "comment": "电话回访满意"}
    )
    assert view["status"] == "closed" and view["rating"] == 4 and view["rating_state"] == survey.RATED
    assert (await api.ok("dispatcher", "GET", "/callbacks"))["items"] == []
    # An unhappy call-back on a ticket closed unrated sends it back to the dispatcher.
    other = await api.assigned_ticket()
    await resolve(api, other, "unit")
    api.clock.now += 72 * 3600
    assert await survey.handle_timer(api.ctx, {"kind": survey.TIMER_EXPIRY, "ticket_id": other, "attempt": 1})
    view = await api.ok("dispatcher", "POST", f"/callbacks/{other}", {"reached": True, "rating": 2})
    assert (view["status"], view["attempts"], view["unit"]) == ("accepted", 1, "")


async def test_quiet_hours_defer_pushes_to_morning(api: Api) -> None:
    tid = await api.new_ticket()
    api.clock.now = dt.datetime(2026, 11, 25, 23, 0, tzinfo=ZONE).timestamp()
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/accept", {})
    # The push is queued now with not_before = 08:00; the dispatcher parks it until then.
    pushes = {o.key: o.not_before for o in await outbox(api)}
    assert pushes["status.accepted"] == dt.datetime(2026, 11, 26, 8, 0, tzinfo=ZONE).timestamp()
    assert pushes["ticket.created_offline"] == 0.0  # created at 10:00, before the clock moved


async def test_citizen_talking_now_is_not_deferred(api: Api) -> None:
    tid = await api.assigned_ticket()
    api.clock.now = dt.datetime(2026, 11, 26, 6, 30, tzinfo=ZONE).timestamp()
    await api.ctx.redis.hset(
        keys.address_state("default", "tel:+8613812345678"), "last_inbound", api.clock.now - 60
    )
    await api.ok("unit", "POST", f"/tickets/{tid}/reply", {"text": "马上处理"})
    last = (await outbox(api))[-1]
    assert (last.key, last.not_before) == ("status.replied", 0.0)
    await api.ctx.redis.hset(
        keys.address_state("default", "tel:+8613812345678"), "last_inbound", api.clock.now - 3600
    )
    await api.ok("unit", "POST", f"/tickets/{tid}/reply", {"text": "还在处理"})
    last = (await outbox(api))[-1]  # not talking any more: waits for 08:00
    assert (last.key, last.not_before) == (
        "status.replied",
        dt.datetime(2026, 11, 26, 8, 0, tzinfo=ZONE).timestamp(),
    )
