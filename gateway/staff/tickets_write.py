"""Ticket actions: accept, reject, assign/transfer, note, reply, request information, resolve,
reopen, merge. Each is one decision over the ticket as loaded under WATCH (queries.mutate): the
status move is checked against the life cycle, and the event, pushes and timers commit with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from channels.base import Purpose
from gateway.staff import pushes, queries, survey
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.routing import Call, Result
from gateway.staff.tickets_read import ticket_view, visible_ticket
from store import keys
from store.model import IllegalTransition, TicketEvent, TicketStatus, check_move

S = TicketStatus
Decide = Callable[[dict[str, Any], int, float], queries.Change]

REASON = Field("reason", required=True, min_length=1, max_length=1000)
TEXT = Field("text", required=True, min_length=1, max_length=4000)
NOTE = Field("note", max_length=2000)
ASSIGN_BODY = (
    Field("unit", required=True, min_length=1, max_length=100, description="unit id"),
    NOTE,
    Field("due_date", kind="date", description="reply due date (local day)"),
)


def _illegal(exc: IllegalTransition) -> ApiError:
    return ApiError(409, "illegal_transition", str(exc), "status")


def move(t: dict[str, Any], to: TicketStatus, actor: str, now: float, **payload: Any) -> queries.Change:
    current = TicketStatus(t["status"])
    check_move(t["id"], current, to)
    ch = queries.Change(fields={"status": str(to)})
    ch.events.append(TicketEvent("status", actor, now, {"from": str(current), "to": str(to), **payload}))
    return ch


async def _push_at(ctx: StaffContext, ticket: dict[str, Any], now: float) -> tuple[str | None, float]:
    recipient = queries.contact_address(ticket)
    if recipient is None:
        return None, 0.0
    return recipient, await pushes.push_time(
        ctx.redis, ctx.tid, recipient, now, ctx.tenant.zone, ctx.quiet_window
    )


def push(
    ctx: StaffContext, ch: queries.Change, t: dict[str, Any], where: tuple[str | None, float], key: str,
    n: int, purpose: Purpose = Purpose.STATUS, **params: str,
) -> None:  # fmt: skip
    recipient, not_before = where
    if recipient is None:
        return
    o = pushes.build_push(
        tenant=ctx.tid, ticket=t, recipient=recipient, key=key, params=params,
        cause=f"{n}:{key}", not_before=not_before, purpose=purpose,
    )  # fmt: skip
    ch.outbounds.append(o)
    ch.events.append(
        TicketEvent(
            "push", "system", ch.events[0].at if ch.events else 0.0, {"key": key, "outbound_id": o.id}
        )
    )


async def run(ctx: StaffContext, call: Call, decide: Decide) -> dict[str, Any]:
    """Load the visible ticket, apply ``decide``, answer its view. Not visible → 404."""
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    now = ctx.clock()
    where = await _push_at(ctx, ticket, now)

    def decide_now(t: dict[str, Any], n: int) -> queries.Change:
        ch = decide(t, n, now)
        for o in ch.outbounds:
            if o.purpose in (Purpose.STATUS, Purpose.STAFF_REPLY, Purpose.SURVEY) and where[1]:
                object.__setattr__(o, "not_before", where[1])
        return ch

    try:
        after, _ = await queries.mutate(ctx.redis, ctx.tid, ticket["id"], decide_now, now)
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    except KeyError:
        raise not_found() from None
    return ticket_view(ctx, call.staff, after)


async def accept(ctx: StaffContext, call: Call) -> Result:
    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        if t["status"] != S.NEW:
            raise IllegalTransition(t["id"], S(t["status"]), S.ACCEPTED)
        ch = move(t, S.ACCEPTED, call.staff.actor, now)
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.accepted", n)
        return ch

    return 200, await run(ctx, call, decide)


async def reject(ctx: StaffContext, call: Call) -> Result:
    reason = call.body["reason"]

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        ch = move(t, S.REJECTED, call.staff.actor, now, reason=reason)
        ch.fields["reject_reason"] = reason
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.rejected", n, reason=reason)
        return ch

    return 200, await run(ctx, call, decide)


async def assign(ctx: StaffContext, call: Call) -> Result:
    unit = call.body["unit"]
    raw = await ctx.redis.hget(keys.units(ctx.tid), unit) if "{" not in unit and "}" not in unit else None
    if raw is None:
        raise ApiError(422, "unknown_unit", f"no unit {unit!r}; create it first", "unit")
    unit_name = json.loads(raw).get("name", unit)
    due = call.body.get("due_date")

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        payload: dict[str, Any] = {
            "unit": unit,
            "note": call.body.get("note", ""),
            "from_unit": t.get("unit") or "",
        }
        ch = move(t, S.ASSIGNED, call.staff.actor, now)
        ch.fields["unit"] = unit
        if due is not None:
            ch.fields["due_date"] = due.isoformat()
            payload["due_date"] = due.isoformat()
        ch.events.append(TicketEvent("assigned", call.staff.actor, now, payload))
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.assigned", n, unit=unit_name)
        return ch

    return 200, await run(ctx, call, decide)


async def note(ctx: StaffContext, call: Call) -> Result:
    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        return queries.Change(
            events=[TicketEvent("note", call.staff.actor, now, {"text": call.body["text"]})]
        )

    return 201, await run(ctx, call, decide)


async def reply(ctx: StaffContext, call: Call) -> Result:
    text = call.body["text"]
    unit = call.staff.unit

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        ch = move(t, S.REPLIED, call.staff.actor, now)
        ch.events.append(TicketEvent("reply", call.staff.actor, now, {"text": text}))
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.replied", n, Purpose.STAFF_REPLY,
             unit=unit or str(t.get("unit") or ""), text=text)  # fmt: skip
        return ch

    return 200, await run(ctx, call, decide)


async def request_info(ctx: StaffContext, call: Call) -> Result:
    question = call.body["question"]

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        if t["status"] not in (S.NEW, S.ACCEPTED, S.ASSIGNED, S.REPLIED, S.REDISPATCHED):
            raise IllegalTransition(t["id"], S(t["status"]), S(t["status"]))
        if queries.contact_address(t) is None:
            raise ApiError(422, "no_contact", "the citizen left no address to ask", "question")
        ch = queries.Change(events=[TicketEvent("question", call.staff.actor, now, {"text": question})])
        push(
            ctx,
            ch,
            t,
            (queries.contact_address(t), 0.0),
            "status.more_info",
            n,
            Purpose.STAFF_REPLY,
            question=question,
        )
        return ch

    view = await run(ctx, call, decide)
    address = queries.contact_address(await visible_ticket(ctx, call.staff, view["id"]))
    if address:
        pending = {"ticket_id": view["id"], "question": question, "asked_by": call.staff.actor}
        await queries.patch_conversation(ctx.redis, ctx.tid, address, {"pending_question": pending})
    return 200, view


async def resolve(ctx: StaffContext, call: Call) -> Result:
    text = call.body["resolution"]

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        ch = move(t, S.RESOLVED, call.staff.actor, now)
        ch.fields.update({"resolution": text, "rating_state": "pending"})
        ch.events.append(TicketEvent("resolution", call.staff.actor, now, {"text": text}))
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.resolved", n, text=text)
        survey.start(ctx, t, ch, n, now)
        ch.extra.append(lambda p: queries.count_day(p, ctx.tid, ctx.tenant.zone, now, "resolved"))
        return ch

    view = await run(ctx, call, decide)
    full = await visible_ticket(ctx, call.staff, view["id"])
    await survey.mark_pending(ctx, full)
    return 200, view


async def reopen(ctx: StaffContext, call: Call) -> Result:
    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        if t["status"] not in (S.RESOLVED, S.CLOSED, S.REJECTED):  # NEW→ACCEPTED is accepting, not reopening
            raise IllegalTransition(t["id"], S(t["status"]), S.ACCEPTED)
        ch = move(t, S.ACCEPTED, call.staff.actor, now, reason=call.body["reason"])
        ch.fields["merged_into"] = ""
        ch.extra.append(lambda p: p.zrem(keys.callback_list(ctx.tid), t["id"]))
        return ch

    return 200, await run(ctx, call, decide)


async def merge(ctx: StaffContext, call: Call) -> Result:
    """Close a duplicate into another ticket; its citizen is told the surviving id."""
    target = await visible_ticket(ctx, call.staff, call.body["into"])
    src = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    if target["id"] == src["id"]:
        raise ApiError(422, "invalid_value", "a ticket cannot be merged into itself", "into")
    if target.get("merged_into"):
        raise ApiError(422, "invalid_value", f"{target['id']} was itself merged into another", "into")

    def decide(t: dict[str, Any], n: int, now: float) -> queries.Change:
        # A duplicate leaves the life cycle like a rejection whose reason is the surviving id.
        ch = move(t, S.REJECTED, call.staff.actor, now, merged_into=target["id"])
        ch.fields["merged_into"] = target["id"]
        ev = TicketEvent(
            "merged", call.staff.actor, now, {"from": t["id"], "note": call.body.get("note", "")}
        )
        line = json.dumps(ev.to_json(), ensure_ascii=False)
        ch.extra.append(lambda p: p.rpush(keys.ticket_events(ctx.tid, target["id"]), line))
        push(ctx, ch, t, (queries.contact_address(t), 0.0), "status.merged", n, into=target["id"])
        return ch

    return 200, await run(ctx, call, decide)
