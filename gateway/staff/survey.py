"""The satisfaction survey (满意度评价) and re-dispatch (二次交办).

On resolve the citizen is asked to rate in their own channel (``survey.ask``); the conversation
state gets ``pending_survey`` so the engine reads the next answer as a rating. Two timers follow:
a reminder after ``survey_reminder_hours`` and expiry after ``survey_expiry_hours``, which closes
the ticket as "not rated" and puts it on the call-back list (回访), where staff record the phone
call's outcome as the rating.

A rating of 4 (satisfied) or 5 closes the ticket. Anything lower sends it back to the dispatcher
queue (status ``redispatched``) with the citizen's comment: the attempt counter increments, the
unit that failed is recorded and the citizen is told. Once ``max_redispatch`` attempts have
failed the ticket is also flagged for supervision (``keys.supervision_queue``).

Timer payloads are ``{"kind": "staff.survey_reminder" | "staff.survey_expiry", "ticket_id",
"attempt"}``; the scheduler hands them to :func:`handle_timer`.
"""

from __future__ import annotations

from typing import Any

from channels.base import Purpose
from gateway.staff import pushes, queries
from gateway.staff.context import StaffContext
from store import keys
from store.model import TicketEvent, TicketStatus, check_move

SATISFIED = 4
TIMER_REMINDER = "staff.survey_reminder"
TIMER_EXPIRY = "staff.survey_expiry"
NOT_RATED = "not_rated"


class NotAwaitingRating(ValueError):
    """A rating for a ticket that is not waiting for one (not resolved, or already rated)."""


def timer_ids(ticket_id: str, attempt: int) -> tuple[str, str]:
    return f"survey-reminder:{ticket_id}:{attempt}", f"survey-expiry:{ticket_id}:{attempt}"


def start(ctx: StaffContext, ticket: dict[str, Any], change: queries.Change, n: int, now: float) -> None:
    """Add the survey to a resolve change: the question and both timers."""
    recipient = queries.contact_address(ticket)
    if recipient is None:
        return  # nobody to ask (offline letter without a phone): the call-back list covers it
    attempt = int(ticket.get("attempt") or 1)
    change.outbounds.append(
        pushes.build_push(
            tenant=ctx.tid, ticket=ticket, recipient=recipient, key="survey.ask", params={},
            cause=f"{n}:survey", purpose=Purpose.SURVEY,
        )
    )  # fmt: skip
    reminder_id, expiry_id = timer_ids(ticket["id"], attempt)
    payload = {"ticket_id": ticket["id"], "attempt": attempt}
    change.timers.append(
        (reminder_id, now + ctx.tenant.survey_reminder_hours * 3600, {**payload, "kind": TIMER_REMINDER})
    )
    change.timers.append(
        (expiry_id, now + ctx.tenant.survey_expiry_hours * 3600, {**payload, "kind": TIMER_EXPIRY})
    )


async def mark_pending(ctx: StaffContext, ticket: dict[str, Any]) -> None:
    recipient = queries.contact_address(ticket)
    if recipient is not None:
        survey = {"ticket_id": ticket["id"], "attempt": int(ticket.get("attempt") or 1)}
        await queries.patch_conversation(ctx.redis, ctx.tid, recipient, {"pending_survey": survey})


def _rating_decision(
    ctx: StaffContext, t: dict[str, Any], rating: int, comment: str, actor: str, now: float, n: int
) -> queries.Change:
    status = TicketStatus(t["status"])
    if status is not TicketStatus.RESOLVED and not (
        status is TicketStatus.CLOSED and t.get("rating_state") == NOT_RATED
    ):
        raise NotAwaitingRating(f"ticket {t['id']} is {status}, not waiting for a rating")
    attempt = int(t.get("attempt") or 1)
    unit = str(t.get("unit") or "")
    ch = queries.Change()
    ch.cancel_timers.extend(timer_ids(t["id"], attempt))
    ch.events.append(TicketEvent("rating", actor, now, {"rating": rating, "comment": comment, "unit": unit}))
    ok = rating >= SATISFIED
    counters = ["rated", f"rated:{unit}"] + (["satisfied", f"satisfied:{unit}"] if ok else [])
    ch.extra.append(lambda p: queries.count_day(p, ctx.tid, ctx.tenant.zone, now, *counters))
    ch.fields.update({"rating": float(rating), "rating_comment": comment, "rating_state": "rated"})
    ch.extra.append(lambda p: p.zrem(keys.callback_list(ctx.tid), t["id"]))
    if ok:
        if status is TicketStatus.RESOLVED:
            ch.fields["status"] = str(TicketStatus.CLOSED)
            ch.events.append(TicketEvent("status", actor, now, {"from": str(status), "to": "closed"}))
        return ch
    # Unsatisfied: back to the dispatcher (a closed-then-called-back ticket reopens as accepted).
    target = TicketStatus.REDISPATCHED if status is TicketStatus.RESOLVED else TicketStatus.ACCEPTED
    check_move(t["id"], status, target)
    failed = [*(t.get("failed_units") or []), unit]
    ch.fields.update(
        {"status": str(target), "attempt": float(attempt + 1), "failed_units": failed, "unit": ""}
    )
    ch.events.append(
        TicketEvent(
            "redispatched", actor, now, {"attempt": attempt + 1, "failed_unit": unit, "comment": comment}
        )
    )
    if attempt >= ctx.tenant.max_redispatch:
        ch.fields["flag"] = "supervision"
        ch.extra.append(lambda p: p.zadd(keys.supervision_queue(ctx.tid), {t["id"]: now}))
        ch.events.append(
            TicketEvent("flagged", "system", now, {"reason": "redispatch_limit", "attempts": attempt})
        )
    recipient = queries.contact_address(t)
    if recipient:
        ch.outbounds.append(
            pushes.build_push(
                tenant=ctx.tid, ticket=t, recipient=recipient, key="status.redispatched",
                params={"attempt": str(attempt + 1)}, cause=f"{n}:redispatched",
            )
        )  # fmt: skip
    return ch


async def record_rating(
    ctx: StaffContext,
    ticket_id: str,
    rating: int,
    comment: str = "",
    actor: str = "citizen",
    *,
    amend: bool = False,
) -> dict[str, Any]:
    """Apply a rating (from the engine's RecordRating, or a call-back). Returns the ticket after.

    ``amend`` attaches a late comment to the rating already recorded, changing no status.
    """
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be 1-5, got {rating}")
    now = ctx.clock()
    if amend:

        def add_comment(t: dict[str, Any], n: int) -> queries.Change:
            ch = queries.Change(fields={"rating_comment": comment})
            ch.events.append(TicketEvent("rating_comment", actor, now, {"comment": comment}))
            return ch

        ticket, _ = await queries.mutate(ctx.redis, ctx.tid, ticket_id, add_comment, now)
        return ticket
    ticket, _ = await queries.mutate(
        ctx.redis,
        ctx.tid,
        ticket_id,
        lambda t, n: _rating_decision(ctx, t, rating, comment, actor, now, n),
        now,
    )
    recipient = queries.contact_address(ticket)
    if recipient:
        await queries.patch_conversation(ctx.redis, ctx.tid, recipient, {}, drop_keys=("pending_survey",))
    return ticket


async def handle_timer(ctx: StaffContext, payload: dict[str, Any]) -> bool:
    """Fire a survey timer. False when it no longer applies (already rated, reopened …)."""
    kind, tid = payload.get("kind"), str(payload.get("ticket_id", ""))
    now = ctx.clock()
    ticket = await queries.load_ticket(ctx.redis, ctx.tid, tid)
    if ticket is None or ticket.get("status") != TicketStatus.RESOLVED:
        return False
    if int(ticket.get("attempt") or 1) != int(payload.get("attempt", 0)):
        return False
    if kind == TIMER_REMINDER:
        return await _remind(ctx, tid, now)
    if kind == TIMER_EXPIRY:
        return await _expire(ctx, tid, now)
    return False


async def _remind(ctx: StaffContext, tid: str, now: float) -> bool:
    def decide(t: dict[str, Any], n: int) -> queries.Change:
        ch = queries.Change()
        recipient = queries.contact_address(t)
        if recipient:
            ch.outbounds.append(
                pushes.build_push(
                    tenant=ctx.tid, ticket=t, recipient=recipient, key="survey.reminder", params={},
                    cause=f"{n}:survey-reminder", purpose=Purpose.REMINDER,
                )
            )  # fmt: skip
        ch.events.append(TicketEvent("survey_reminder", "system", now, {}))
        return ch

    await queries.mutate(ctx.redis, ctx.tid, tid, decide, now)
    return True


async def _expire(ctx: StaffContext, tid: str, now: float) -> bool:
    def decide(t: dict[str, Any], n: int) -> queries.Change:
        if t.get("status") != TicketStatus.RESOLVED:
            raise NotAwaitingRating(tid)
        ch = queries.Change(fields={"status": str(TicketStatus.CLOSED), "rating_state": NOT_RATED})
        ch.events.append(
            TicketEvent("status", "system", now, {"from": "resolved", "to": "closed", "reason": NOT_RATED})
        )
        ch.extra.append(lambda p: p.zadd(keys.callback_list(ctx.tid), {tid: now}))
        return ch

    try:
        ticket, _ = await queries.mutate(ctx.redis, ctx.tid, tid, decide, now)
    except NotAwaitingRating:
        return False
    recipient = queries.contact_address(ticket)
    if recipient:
        await queries.patch_conversation(ctx.redis, ctx.tid, recipient, {}, drop_keys=("pending_survey",))
    return True
