"""Ticket actions: accept, reject, assign/transfer, note, reply, request information, resolve,
reopen, merge. Each is one decision over a fresh snapshot of the ticket, written as ONE store write
(queries.mutate): the status move (checked against the life cycle here and again in the script),
its events, pushes, timers, the citizen's conversation patch and the Idempotency-Key mark."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from channels.base import Purpose
from conversation.state import StaffQuestion
from gateway.staff import pushes, queries, survey
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.queries import Plan, Snapshot
from gateway.staff.routing import Call, Result
from gateway.staff.tickets_read import end_of_day, ticket_view, visible_ticket
from store import keys
from store.apply import TicketNotFound
from store.model import (
    AddEvent,
    ExtendField,
    IllegalTransition,
    QueueRemove,
    SetFields,
    SetStatus,
    Ticket,
    TicketEvent,
    TicketStatus,
    check_move,
)

S = TicketStatus
Where = pushes.Where

REASON = Field("reason", required=True, min_length=1, max_length=1000)
TEXT = Field("text", required=True, min_length=1, max_length=4000)
NOTE = Field("note", max_length=2000)
ASSIGN_BODY = (
    Field("unit", required=True, min_length=1, max_length=100, description="unit id"),
    NOTE,
    Field("due_date", kind="date", description="reply due date (local day)"),
)
REOPENABLE = (S.RESOLVED, S.CLOSED, S.REJECTED)  # NEW→ACCEPTED is accepting, not reopening


def _illegal(exc: IllegalTransition) -> ApiError:
    return ApiError(409, "illegal_transition", str(exc), "status")


def move(t: Ticket, to: TicketStatus, actor: str, **payload: Any) -> SetStatus:
    check_move(t.id, t.status, to)
    return SetStatus(t.id, to, actor, payload)


async def run(
    ctx: StaffContext, call: Call, decide: Callable[[Snapshot, float, Where], Plan], *,
    ok_status: int = 200, also: Sequence[str] = (),
) -> Result:  # fmt: skip
    """Load the visible ticket, write ``decide``'s plan, answer its view. Not visible → 404."""
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    where = await pushes.where_to(ctx, ticket)
    try:
        done = await queries.mutate(
            ctx, ticket, lambda snaps, now: decide(snaps[ticket.id], now, where),
            actor=call.staff.actor, also=also, idem=call.idem,
            respond=lambda after: (ok_status, ticket_view(ctx, call.staff, after)),
        )  # fmt: skip
    except IllegalTransition as exc:
        raise _illegal(exc) from None
    except (KeyError, TicketNotFound):
        raise not_found() from None
    return done.response or (ok_status, ticket_view(ctx, call.staff, done.ticket))


async def accept(ctx: StaffContext, call: Call) -> Result:
    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        if s.ticket.status is not S.NEW:
            raise IllegalTransition(s.ticket.id, s.ticket.status, S.ACCEPTED)
        plan = Plan(changes=[move(s.ticket, S.ACCEPTED, call.staff.actor)])
        pushes.push(ctx, plan, s, where, "status.accepted", now)
        return plan

    return await run(ctx, call, decide)


async def reject(ctx: StaffContext, call: Call) -> Result:
    reason = call.body["reason"]

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        plan = Plan(changes=[move(s.ticket, S.REJECTED, call.staff.actor, reason=reason)])
        plan.changes.append(SetFields(s.ticket.id, {"reject_reason": reason}))
        pushes.push(ctx, plan, s, where, "status.rejected", now, reason=reason)
        return plan

    return await run(ctx, call, decide)


async def assign(ctx: StaffContext, call: Call) -> Result:
    unit = call.body["unit"]
    raw = await ctx.redis.hget(keys.units(ctx.tid), unit) if "{" not in unit and "}" not in unit else None
    if raw is None:
        raise ApiError(422, "unknown_unit", f"no unit {unit!r}; create it first", "unit")
    unit_name = str(json.loads(raw).get("name", unit))
    due = call.body.get("due_date")

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        t = s.ticket
        payload: dict[str, Any] = {"unit": unit, "note": call.body.get("note", ""), "from_unit": t.unit}
        values: dict[str, Any] = {"unit": unit}
        if due is not None:
            values["due_at"] = end_of_day(ctx, due)
            payload["due_date"] = due.isoformat()
        plan = Plan(changes=[move(t, S.ASSIGNED, call.staff.actor), SetFields(t.id, values)])
        plan.changes.append(AddEvent(t.id, TicketEvent("assigned", call.staff.actor, now, payload)))
        pushes.push(ctx, plan, s, where, "status.assigned", now, unit=unit_name)
        return plan

    return await run(ctx, call, decide)


async def note(ctx: StaffContext, call: Call) -> Result:
    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        event = TicketEvent("note", call.staff.actor, now, {"text": call.body["text"]})
        return Plan(changes=[AddEvent(s.ticket.id, event)])

    return await run(ctx, call, decide, ok_status=201)


async def reply(ctx: StaffContext, call: Call) -> Result:
    text = call.body["text"]

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        t = s.ticket
        plan = Plan(changes=[move(t, S.REPLIED, call.staff.actor)])
        plan.changes.append(AddEvent(t.id, TicketEvent("reply", call.staff.actor, now, {"text": text})))
        unit = call.staff.unit or t.unit
        pushes.push(ctx, plan, s, where, "status.replied", now, Purpose.STAFF_REPLY, unit=unit, text=text)
        return plan

    return await run(ctx, call, decide)


async def request_info(ctx: StaffContext, call: Call) -> Result:
    """The question goes to the citizen and into their conversation (``pending_question``), so
    the engine files the next answer as a supplement to this ticket."""
    question = call.body["question"]

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        t = s.ticket
        if not t.is_open:
            raise IllegalTransition(t.id, t.status, t.status)
        if where[0] is None:
            raise ApiError(422, "no_contact", "the citizen left no address to ask", "question")
        event = TicketEvent("question", call.staff.actor, now, {"text": question})
        plan = Plan(changes=[AddEvent(t.id, event)])
        plan.conversation = lambda st: replace(st, pending_question=StaffQuestion(t.id, question))
        pushes.push(ctx, plan, s, where, "status.more_info", now, Purpose.STAFF_REPLY, question=question)
        return plan

    return await run(ctx, call, decide)


async def resolve(ctx: StaffContext, call: Call) -> Result:
    text = call.body["resolution"]

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        t = s.ticket
        plan = Plan(changes=[move(t, S.RESOLVED, call.staff.actor)])
        plan.changes.append(SetFields(t.id, {"resolution": text, "rating_state": survey.PENDING}))
        plan.changes.append(AddEvent(t.id, TicketEvent("resolution", call.staff.actor, now, {"text": text})))
        pushes.push(ctx, plan, s, where, "status.resolved", now, text=text)
        survey.start(ctx, s, plan, where, now)
        return plan

    return await run(ctx, call, decide)


async def reopen(ctx: StaffContext, call: Call) -> Result:
    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        t = s.ticket
        if t.status not in REOPENABLE:
            raise IllegalTransition(t.id, t.status, S.ACCEPTED)
        plan = Plan(changes=[move(t, S.ACCEPTED, call.staff.actor, reason=call.body["reason"])])
        plan.changes += [SetFields(t.id, {"merged_into": ""}), QueueRemove(t.id, "callbacks")]
        plan.timers_cancel += survey.timer_ids(t.id, t.attempts + 1)
        # A survey still pending must not read the citizen's next "1" as a rating of work that
        # is being done again: dropped in the same write (a later resolve asks afresh).
        plan.conversation = survey.drop_survey(t.id)
        return plan

    return await run(ctx, call, decide)


async def merge(ctx: StaffContext, call: Call) -> Result:
    """Close a duplicate into another ticket; its citizen is told the surviving id."""
    target = await visible_ticket(ctx, call.staff, call.body["into"])
    src = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    if target.id == src.id:
        raise ApiError(422, "invalid_value", "a ticket cannot be merged into itself", "into")
    if target.merged_into:
        raise ApiError(422, "invalid_value", f"{target.id} was itself merged into another", "into")

    def decide(s: Snapshot, now: float, where: Where) -> Plan:
        # A duplicate leaves the life cycle like a rejection whose reason is the surviving id.
        t = s.ticket
        plan = Plan(changes=[move(t, S.REJECTED, call.staff.actor, merged_into=target.id)])
        ev = TicketEvent("merged", call.staff.actor, now, {"from": t.id, "note": call.body.get("note", "")})
        plan.changes += [
            SetFields(t.id, {"merged_into": target.id}),
            ExtendField(t.id, "links", (target.id,)),
            ExtendField(target.id, "links", (t.id,)),
            AddEvent(target.id, ev),
        ]
        pushes.push(ctx, plan, s, where, "status.merged", now, into=target.id)
        return plan

    return await run(ctx, call, decide, also=(target.id,))
