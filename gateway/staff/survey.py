"""The satisfaction survey (满意度评价) and re-dispatch (二次交办).

On resolve the citizen is asked to rate in their own channel (``survey.ask``) and, in the same
write, their conversation state gets ``pending_survey`` (the ticket id) so the engine reads the
next answer as a rating. Two timers follow: a reminder after ``survey_reminder_hours`` and expiry
after ``survey_expiry_hours``, which closes the ticket as "not rated" and puts it on the
call-back list (回访), where staff record the phone call's outcome as the rating.

:func:`rating_changes` is the policy, pure and in store terms, so a citizen's rating can go into
the same atomic write as their conversation turn (gateway/intake.py) and a call-back's into the
staff write (:func:`record_rating`). A rating of 4 (satisfied) or 5 closes the ticket. Anything
lower sends it back to the dispatcher queue (``redispatched``; from a call-back on a ticket
closed unrated, ``accepted``) with the citizen's comment: ``attempts`` increments, the unit that
failed is recorded and cleared, and the citizen is told. Once ``max_redispatch`` attempts have
failed the ticket is also flagged for supervision (``supervision`` field + the supervision queue).

Timer payloads are ``{"kind": "staff.survey_reminder" | "staff.survey_expiry", "ticket_id",
"attempt"}`` (attempt = ``attempts + 1``, the dispatch round being rated); the scheduler hands
them to :func:`handle_timer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from channels.base import Outbound, Purpose
from conversation.state import ConversationState
from gateway.config import TenantSettings
from gateway.staff import pushes, queries
from gateway.staff.context import StaffContext
from gateway.staff.queries import Plan, Snapshot
from store.apply import TicketNotFound, TimerSet
from store.model import (
    AddEvent,
    CountDay,
    ExtendField,
    IllegalTransition,
    IncrField,
    QueueAdd,
    QueueRemove,
    SetFields,
    SetStatus,
    Ticket,
    TicketChange,
    TicketEvent,
    TicketStatus,
    check_move,
)

SATISFIED = 4
TIMER_REMINDER = "staff.survey_reminder"
TIMER_EXPIRY = "staff.survey_expiry"
PENDING, RATED, NOT_RATED = "pending", "rated", "not_rated"  # Ticket.rating_state


class NotAwaitingRating(ValueError):
    """A rating for a ticket that is not waiting for one (not resolved, or already rated)."""


@dataclass(frozen=True, slots=True)
class RatingEffects:
    """What recording a rating writes, in store terms. Work-queue moves (off the call-back list,
    onto the supervision queue) are ``QueueAdd``/``QueueRemove`` entries of ``changes``, so a
    caller passing ``changes`` to its Write gets them too."""

    changes: list[TicketChange] = field(default_factory=list)
    outbox: list[Outbound] = field(default_factory=list)
    timers_cancel: list[str] = field(default_factory=list)

    @property
    def queue_ops(self) -> list[QueueAdd | QueueRemove]:
        return [c for c in self.changes if isinstance(c, QueueAdd | QueueRemove)]


def timer_ids(ticket_id: str, attempt: int) -> tuple[str, str]:
    return f"survey-reminder:{ticket_id}:{attempt}", f"survey-expiry:{ticket_id}:{attempt}"


def drop_survey(ticket_id: str) -> queries.ConvPatch:
    def patch(state: ConversationState) -> ConversationState:
        return replace(state, pending_survey=None) if state.pending_survey == ticket_id else state

    return patch


def start(ctx: StaffContext, snap: Snapshot, plan: Plan, where: tuple[str | None, float], now: float) -> None:
    """Add the survey to a resolve plan: the question, both timers, the conversation mark."""
    t, recipient = snap.ticket, where[0]
    if recipient is None:
        return  # nobody to ask (offline letter without a phone): the call-back list covers it
    attempt = t.attempts + 1
    pushes.push(ctx, plan, snap, where, "survey.ask", now, Purpose.SURVEY, event=False)
    reminder_id, expiry_id = timer_ids(t.id, attempt)
    payload = {"ticket_id": t.id, "attempt": attempt}
    for timer_id, hours, kind in (
        (reminder_id, ctx.tenant.survey_reminder_hours, TIMER_REMINDER),
        (expiry_id, ctx.tenant.survey_expiry_hours, TIMER_EXPIRY),
    ):
        plan.timers_set.append(TimerSet(timer_id, now + hours * 3600, json.dumps({**payload, "kind": kind})))
    plan.conversation = lambda st: replace(st, pending_survey=t.id)


def rating_changes(
    ticket: Ticket,
    rating: int,
    comment: str,
    actor: str,
    now: float,
    tenant: TenantSettings,
    *,
    amend: bool = False,
) -> RatingEffects:
    """The survey policy for one rating (pure). Raises NotAwaitingRating (a ValueError) when the
    ticket is not waiting for one, ValueError for a rating outside 1-5. ``amend`` attaches a late
    comment to the rating already recorded and changes no status."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be 1-5, got {rating}")
    tid = ticket.id
    if amend:
        if ticket.rating_state != RATED:
            raise NotAwaitingRating(f"ticket {tid} has no rating to comment on")
        event = TicketEvent("rating_comment", actor, now, {"comment": comment})
        return RatingEffects(changes=[SetFields(tid, {"rating_comment": comment}), AddEvent(tid, event)])
    status = ticket.status
    callback = status is TicketStatus.CLOSED and ticket.rating_state == NOT_RATED
    if not (status is TicketStatus.RESOLVED and ticket.rating_state != RATED) and not callback:
        raise NotAwaitingRating(f"ticket {tid} is {status}, not waiting for a rating")
    attempt, unit, ok = ticket.attempts + 1, ticket.unit, rating >= SATISFIED
    counters = ["rated", f"rated:{unit}"] + (["satisfied", f"satisfied:{unit}"] if ok else [])
    fx = RatingEffects(timers_cancel=list(timer_ids(tid, attempt)))
    fx.changes.append(
        AddEvent(tid, TicketEvent("rating", actor, now, {"rating": rating, "comment": comment, "unit": unit}))
    )
    fx.changes.append(SetFields(tid, {"rating": rating, "rating_comment": comment, "rating_state": RATED}))
    fx.changes.extend(CountDay(name) for name in counters)
    fx.changes.append(QueueRemove(tid, "callbacks"))
    if ok:
        if status is TicketStatus.RESOLVED:
            fx.changes.append(SetStatus(tid, TicketStatus.CLOSED, actor, {"rating": rating}))
        return fx
    # Unsatisfied: back to the dispatcher (a closed-then-called-back ticket reopens as accepted).
    target = TicketStatus.REDISPATCHED if status is TicketStatus.RESOLVED else TicketStatus.ACCEPTED
    check_move(tid, status, target)
    fx.changes.extend([
        SetStatus(tid, target, actor, {"rating": rating}),
        IncrField(tid, "attempts"),
        ExtendField(tid, "failed_units", (unit,), unique=False),
        SetFields(tid, {"unit": ""}),
        AddEvent(tid, TicketEvent("redispatched", actor, now, {"attempt": attempt + 1, "failed_unit": unit, "comment": comment})),
    ])  # fmt: skip
    if attempt >= tenant.max_redispatch:
        fx.changes.extend([
            SetFields(tid, {"supervision": True}),
            QueueAdd(tid, "supervision", now),
            AddEvent(tid, TicketEvent("flagged", "system", now, {"reason": "redispatch_limit", "attempts": attempt})),
        ])  # fmt: skip
    recipient = queries.contact_address(ticket)
    if recipient:
        told = pushes.build_push(
            tenant=ticket.tenant, ticket=ticket, recipient=recipient, key="status.redispatched",
            params={"attempt": str(attempt + 1)}, cause=f"rating:{attempt}:redispatched",
        )  # fmt: skip
        fx.outbox.append(told)
        # Like every staff push, the notice shows in the timeline with its delivery status.
        payload = {"key": told.key, "outbound_id": told.id}
        fx.changes.append(AddEvent(tid, TicketEvent("push", "system", now, payload)))
    return fx


async def record_rating(
    ctx: StaffContext,
    ticket_id: str,
    rating: int,
    comment: str = "",
    actor: str = "citizen",
    *,
    amend: bool = False,
    idem: Any = None,
    respond: queries.Responder | None = None,
) -> queries.Done:
    """Apply a rating outside a conversation turn (a call-back's outcome; tests) in one write,
    dropping the citizen's ``pending_survey`` for this ticket in the same write."""
    ticket = await queries.load_ticket(ctx, ticket_id)
    if ticket is None:
        raise TicketNotFound(ticket_id)

    def decide(snaps: dict[str, Snapshot], now: float) -> Plan:
        fx = rating_changes(snaps[ticket_id].ticket, rating, comment, actor, now, ctx.tenant, amend=amend)
        return Plan(
            changes=fx.changes,
            outbox=fx.outbox,
            timers_cancel=fx.timers_cancel,
            conversation=drop_survey(ticket_id),
        )

    return await queries.mutate(ctx, ticket, decide, actor=actor, idem=idem, respond=respond)


async def handle_timer(ctx: StaffContext, payload: dict[str, Any]) -> bool:
    """Fire a survey timer. False when it no longer applies (already rated, reopened …)."""
    kind, tid = payload.get("kind"), str(payload.get("ticket_id", ""))
    ticket = await queries.load_ticket(ctx, tid) if tid and "{" not in tid and "}" not in tid else None
    if ticket is None or not _awaiting(ticket, payload):
        return False
    where = (queries.contact_address(ticket), 0.0)
    if where[0] is not None:
        where = await pushes.where_to(ctx, ticket)
    if kind == TIMER_REMINDER:
        decide = _remind(ctx, payload, where)
    elif kind == TIMER_EXPIRY:
        decide = _expire(ctx, payload, where)
    else:
        return False
    try:
        await queries.mutate(ctx, ticket, decide, actor="system")
    except (NotAwaitingRating, IllegalTransition, TicketNotFound, KeyError):
        return False
    return True


def _awaiting(t: Ticket, payload: dict[str, Any]) -> bool:
    return (
        t.status is TicketStatus.RESOLVED
        and t.rating_state == PENDING
        and t.attempts + 1 == int(payload.get("attempt", 0))
    )


def _remind(ctx: StaffContext, payload: dict[str, Any], where: tuple[str | None, float]) -> Any:
    def decide(snaps: dict[str, Snapshot], now: float) -> Plan:
        s = next(iter(snaps.values()))
        if not _awaiting(s.ticket, payload):
            raise NotAwaitingRating(s.ticket.id)
        plan = Plan(changes=[AddEvent(s.ticket.id, TicketEvent("survey_reminder", "system", now, {}))])
        pushes.push(ctx, plan, s, where, "survey.reminder", now, Purpose.REMINDER)
        return plan

    return decide


def _expire(ctx: StaffContext, payload: dict[str, Any], where: tuple[str | None, float]) -> Any:
    def decide(snaps: dict[str, Snapshot], now: float) -> Plan:
        s = next(iter(snaps.values()))
        t = s.ticket
        if not _awaiting(t, payload):
            raise NotAwaitingRating(t.id)
        plan = Plan(
            changes=[
                SetStatus(t.id, TicketStatus.CLOSED, "system", {"reason": NOT_RATED}),
                SetFields(t.id, {"rating_state": NOT_RATED}),
                QueueAdd(t.id, "callbacks", now),
            ],
            timers_cancel=list(timer_ids(t.id, t.attempts + 1)),
            conversation=drop_survey(t.id),
        )
        pushes.push(ctx, plan, s, where, "survey.closed_unrated", now)
        return plan

    return decide
