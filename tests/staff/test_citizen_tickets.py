"""A ticket filed by a citizen through the store (NewTicket, as the conversation files it) is seen
and worked through the staff API; the citizen's conversation state is patched in the same write
as the ticket change (ConversationState, version bumped, nothing else in it lost); the survey
policy as pure store changes; atomic Idempotency-Key marks under concurrency."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from conversation.state import ConversationState, FiledTicket, StaffQuestion
from gateway.config import TenantSettings
from gateway.staff import survey
from store import keys
from store.apply import Write
from store.model import (
    CountDay,
    NewTicket,
    QueueAdd,
    QueueRemove,
    SetFields,
    SetStatus,
    Ticket,
    TicketStatus,
)
from tests.staff.conftest import Api, outbox_entries

WECHAT = "wechat:wx1:openid-abc"


async def citizen_ticket(api: Api, address: str = WECHAT) -> str:
    new = NewTicket(
        channel="wechat",
        citizen=address,
        description="小区门口路灯坏了",
        addresses=("tel:+8613900001111",),
        location_text="人民路88号",
        phone="+8613900001111",
        category="城市管理",
        entry_point="qr:north",
    )
    return await api.ctx.cases.create_ticket("default", new, actor=f"citizen:{address}")


async def seed_conversation(api: Api, address: str, state: ConversationState, version: int) -> None:
    await api.ctx.redis.hset(
        keys.conversation("default", address), mapping={"version": version, "state": state.to_json()}
    )


async def read_conversation(api: Api, address: str) -> tuple[int, ConversationState]:
    version, raw = await api.ctx.redis.hmget(keys.conversation("default", address), ["version", "state"])
    return int(version or 0), ConversationState.from_json(raw)


async def test_citizen_filed_ticket_shows_and_is_worked_in_the_api(api: Api) -> None:
    tid = await citizen_ticket(api)
    listing = await api.ok("dispatcher", "GET", "/tickets?channel=wechat&q=人民路")
    assert [t["id"] for t in listing["items"]] == [tid]
    view = listing["items"][0]
    assert view["location_text"] == "人民路88号" and view["entry_point"] == "qr:north"
    assert view["citizen"] == WECHAT and view["status"] == "new" and view["attempts"] == 0
    assert view["created_at"] == view["updated_at"] == api.clock.now
    filed = ConversationState(tickets=(FiledTicket(tid, "123456", 1.0),), channel="wechat", language="zh-CN")
    await seed_conversation(api, WECHAT, filed, 3)

    await api.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": "城管局", "due_date": "2026-11-30"})
    await api.ok("unit", "POST", f"/tickets/{tid}/request-info", {"question": "灯杆编号？"})
    version, state = await read_conversation(api, WECHAT)
    assert version == 4 and state.pending_question == StaffQuestion(tid, "灯杆编号？")
    assert state.tickets == filed.tickets and state.channel == "wechat"  # the rest survives

    view = await api.ok("unit", "POST", f"/tickets/{tid}/resolve", {"resolution": "已更换灯具"})
    assert view["status"] == "resolved" and view["resolution"] == "已更换灯具"
    assert view["due_date"] == "2026-11-30" and view["rating_state"] == survey.PENDING
    version, state = await read_conversation(api, WECHAT)
    assert version == 5 and state.pending_survey == tid and state.pending_question is not None
    entries = await outbox_entries(api)
    assert {(o.key, o.recipient) for o in entries} >= {("status.resolved", WECHAT), ("survey.ask", WECHAT)}
    detail = await api.ok("supervisor", "GET", f"/tickets/{tid}")
    kinds = [(e["kind"], e["actor"]) for e in detail["timeline"]]
    assert kinds[0] == ("created", f"citizen:{WECHAT}")
    assert ("resolution", api.staff["unit"].actor) in kinds


async def test_a_turn_that_read_the_old_state_conflicts(api: Api) -> None:
    """The staff write bumps the version, so a turn decided on the state before fails its check."""
    tid = await citizen_ticket(api)
    await seed_conversation(api, WECHAT, ConversationState(channel="wechat"), 7)
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": "城管局"})
    await api.ok("unit", "POST", f"/tickets/{tid}/resolve", {"resolution": "好了"})
    from store.apply import WriteConflict

    stale_turn = Write(tenant="default", conversation=(WECHAT, 7, ConversationState().to_json()))
    try:
        await api.ctx.cases.apply(stale_turn)
        raise AssertionError("a turn on version 7 must conflict")
    except WriteConflict as exc:
        assert exc.current_version == 8
    assert (await read_conversation(api, WECHAT))[1].pending_survey == tid


async def resolved_ticket(api: Api) -> Ticket:
    tid = await api.assigned_ticket()
    await api.ok("unit", "POST", f"/tickets/{tid}/resolve", {"resolution": "已办结"})
    ticket = await api.ctx.cases.get_ticket("default", tid)
    assert ticket is not None
    return ticket


async def test_rating_changes_is_the_policy_in_store_terms(api: Api) -> None:
    tenant = TenantSettings()
    ticket = await resolved_ticket(api)
    now = api.clock.now
    happy = survey.rating_changes(ticket, 5, "好", "citizen:x", now, tenant)
    assert SetStatus(ticket.id, TicketStatus.CLOSED, "citizen:x", {"rating": 5}) in happy.changes
    assert {c.name for c in happy.changes if isinstance(c, CountDay)} == {
        "rated", "rated:城管局", "satisfied", "satisfied:城管局",
    }  # fmt: skip
    assert happy.queue_ops == [QueueRemove(ticket.id, "callbacks")] and happy.outbox == []
    assert happy.timers_cancel == [f"survey-reminder:{ticket.id}:1", f"survey-expiry:{ticket.id}:1"]

    unhappy = survey.rating_changes(ticket, 3, "一般", "citizen:x", now, tenant)
    assert SetStatus(ticket.id, TicketStatus.REDISPATCHED, "citizen:x", {"rating": 3}) in unhappy.changes
    assert SetFields(ticket.id, {"unit": ""}) in unhappy.changes
    assert [o.key for o in unhappy.outbox] == ["status.redispatched"]
    assert not any(isinstance(c, QueueAdd) for c in unhappy.changes)  # first failure: no flag yet

    last_try = survey.rating_changes(replace(ticket, attempts=1), 1, "", "citizen:x", now, tenant)
    assert QueueAdd(ticket.id, "supervision", now) in last_try.changes
    assert SetFields(ticket.id, {"supervision": True}) in last_try.changes

    for bad in (replace(ticket, status=TicketStatus.ASSIGNED), replace(ticket, rating_state=survey.RATED)):
        try:
            survey.rating_changes(bad, 5, "", "citizen:x", now, tenant)
            raise AssertionError("must refuse")
        except survey.NotAwaitingRating:
            pass
    amend = survey.rating_changes(
        replace(ticket, rating_state=survey.RATED), 2, "补充", "c", now, tenant, amend=True
    )
    assert amend.changes[0] == SetFields(ticket.id, {"rating_comment": "补充"}) and amend.outbox == []


async def test_rating_changes_apply_in_a_turn_shaped_write(api: Api) -> None:
    """What gateway/intake.py does: the policy's changes in the same write as the conversation."""
    ticket = await resolved_ticket(api)
    address = "tel:+8613812345678"
    version, state = await read_conversation(api, address)
    assert state.pending_survey == ticket.id
    fx = survey.rating_changes(ticket, 2, "没修好", f"citizen:{address}", api.clock.now, TenantSettings())
    await api.ctx.cases.apply(
        Write(
            tenant="default", changes=fx.changes, outbox=fx.outbox, timers_cancel=fx.timers_cancel,
            conversation=(address, version, replace(state, pending_survey=None).to_json()),
        )
    )  # fmt: skip
    view = await api.ok("dispatcher", "GET", f"/tickets/{ticket.id}")
    assert (view["status"], view["attempts"], view["failed_units"], view["rating"]) == (
        "redispatched", 1, ["城管局"], 2,
    )  # fmt: skip
    assert await api.ctx.redis.zscore(keys.timers("default"), f"survey-expiry:{ticket.id}:1") is None


async def test_concurrent_repeats_of_one_key_act_once(api: Api) -> None:
    tid = await api.assigned_ticket()
    results = await asyncio.gather(
        *(
            api.call("unit", "POST", f"/tickets/{tid}/reply", {"text": "同一请求"}, idem="same")
            for _ in range(8)
        )
    )
    assert {s for s, _ in results} == {200}
    assert all(body == results[0][1] for _, body in results)
    detail = await api.ok("dispatcher", "GET", f"/tickets/{tid}")
    assert [e["kind"] for e in detail["timeline"]].count("reply") == 1
    entries = [o.key for o in await outbox_entries(api)]
    assert entries.count("status.replied") == 1


async def test_the_mark_is_written_with_the_action(api: Api) -> None:
    """The stored response exists as soon as the action does (same script), so a client retry
    after a crash between the two is answered from it instead of running the action again."""
    tid = await api.new_ticket()
    status, first = await api.call("dispatcher", "POST", f"/tickets/{tid}/accept", {}, idem="acc-1")
    assert status == 200
    ext = f"staff:{api.staff['dispatcher'].id}:acc-1"
    assert await api.ctx.redis.exists(keys.idempotency("default", ext))
    events_before = await api.ctx.redis.llen(keys.ticket_events("default", tid))
    assert await api.call("dispatcher", "POST", f"/tickets/{tid}/accept", {}, idem="acc-1") == (200, first)
    assert await api.ctx.redis.llen(keys.ticket_events("default", tid)) == events_before
    # A refusal is remembered too: the same key answers the same 409 even after the move is legal.
    status, refused = await api.call(
        "dispatcher", "POST", f"/tickets/{tid}/resolve", {"resolution": "x"}, idem="r"
    )
    assert status == 409 and refused["error"]["code"] == "illegal_transition"
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": "城管局"})
    again = await api.call("dispatcher", "POST", f"/tickets/{tid}/resolve", {"resolution": "x"}, idem="r")
    assert again == (409, refused)
    assert (await api.ok("dispatcher", "GET", f"/tickets/{tid}"))["status"] == "assigned"
