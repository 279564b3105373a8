"""Status pushes: each citizen-visible change becomes an Outbound to the citizen's channel.

The message is a catalogue key plus parameters; the dispatcher renders it per channel (short
SMS, threaded email, WeChat template outside the 48 h window). Catalogue keys used here
(``conversation/catalogue/*.toml`` must define them):

``status.accepted`` {ticket_id} · ``status.assigned`` {ticket_id, unit} · ``status.replied``
{ticket_id, unit, text} · ``status.resolved`` {ticket_id, text} · ``status.redispatched``
{ticket_id, attempt} · ``status.rejected`` {ticket_id, reason} · ``status.merged`` {ticket_id,
into} · ``status.more_info`` {ticket_id, question} · ``ticket.created_offline`` {ticket_id,
query_code} · ``survey.ask`` {ticket_id} · ``survey.reminder`` {ticket_id} ·
``survey.closed_unrated`` {ticket_id}. :data:`PUSH_KEYS` lists them; a test renders each in
every catalogue language.

Quiet hours (tenant local time, default 21:30–08:00): a non-urgent push gets ``not_before`` at
the end of the window, so nobody's phone buzzes at midnight about a pothole. A citizen who is
talking to us right now (an inbound in the last ``ACTIVE_WINDOW`` seconds) is answered at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from channels.base import Outbound, Purpose
from gateway.staff import queries
from gateway.staff.context import StaffContext
from gateway.staff.queries import Plan, Snapshot
from store import keys
from store.model import AddEvent, Ticket, TicketEvent

ACTIVE_WINDOW = 15 * 60
Where = tuple[str | None, float]  # (recipient, not_before) of a push to the citizen

# Every catalogue key the staff side pushes, with the parameters it passes (ticket_id always).
PUSH_KEYS: Mapping[str, tuple[str, ...]] = {
    "ticket.created_offline": ("query_code",),
    "status.accepted": (),
    "status.assigned": ("unit",),
    "status.replied": ("unit", "text"),
    "status.resolved": ("text",),
    "status.redispatched": ("attempt",),
    "status.rejected": ("reason",),
    "status.merged": ("into",),
    "status.more_info": ("question",),
    "survey.ask": (),
    "survey.reminder": (),
    "survey.closed_unrated": (),
}


def quiet_until(now: float, zone: ZoneInfo, window: tuple[dt.time, dt.time] | None) -> float:
    """The end of the quiet window ``now`` falls in, or 0.0 when it is not quiet now."""
    if window is None:
        return 0.0
    start, end = window
    local = dt.datetime.fromtimestamp(now, zone)
    t = local.time()
    wraps = start > end  # 21:30-08:00 spans midnight
    quiet = (t >= start or t < end) if wraps else (start <= t < end)
    if not quiet:
        return 0.0
    day = local.date()
    if t >= end and wraps:  # evening part: morning is tomorrow
        day += dt.timedelta(days=1)
    morning = dt.datetime.combine(day, end, tzinfo=zone)
    return morning.timestamp()


async def citizen_active(redis: aioredis.Redis, tenant: str, address: str, now: float) -> bool:
    """Whether the citizen wrote to us within the last ``ACTIVE_WINDOW`` seconds."""
    raw = await redis.hget(keys.address_state(tenant, address), "last_inbound")
    if not raw:
        return False
    try:
        last = float(raw)
    except ValueError:
        return False
    return now - last < ACTIVE_WINDOW


def build_push(
    *,
    tenant: str,
    ticket: Ticket,
    recipient: str,
    key: str,
    params: Mapping[str, str],
    cause: str,
    not_before: float = 0.0,
    purpose: Purpose = Purpose.STATUS,
) -> Outbound:
    """One push. ``cause`` makes the id deterministic (ticket + event number), so a replayed
    staff request cannot queue a second copy."""
    tid = ticket.id
    return Outbound(
        id=f"{tid}:{cause}",
        tenant=tenant,
        recipient=recipient,
        purpose=purpose,
        key=key,
        params={"ticket_id": tid, **params},
        ticket_id=tid,
        not_before=not_before,
        language=ticket.language or "zh-CN",
    )


async def push_time(
    redis: aioredis.Redis,
    tenant: str,
    recipient: str,
    now: float,
    zone: ZoneInfo,
    window: tuple[dt.time, dt.time] | None,
) -> float:
    """``not_before`` for a push to ``recipient`` now: deferred in quiet hours unless active."""
    until = quiet_until(now, zone, window)
    if until and await citizen_active(redis, tenant, recipient, now):
        return 0.0
    return until


async def where_to(ctx: StaffContext, ticket: Ticket) -> Where:
    """Whom a push about ``ticket`` goes to, and when (quiet hours)."""
    recipient = queries.contact_address(ticket)
    if recipient is None:
        return None, 0.0
    when = await push_time(ctx.redis, ctx.tid, recipient, ctx.clock(), ctx.tenant.zone, ctx.quiet_window)
    return recipient, when


def push(
    ctx: StaffContext, plan: Plan, snap: Snapshot, where: Where, key: str, now: float,
    purpose: Purpose = Purpose.STATUS, *, event: bool = True, **params: str,
) -> None:  # fmt: skip
    """Add a push to the citizen to ``plan``, with a ``push`` event on the ticket (the timeline
    shows its delivery status). The id derives from the ticket's event count, so a repeated
    decision cannot queue a second copy."""
    recipient, not_before = where
    if recipient is None:
        return
    o = build_push(
        tenant=ctx.tid, ticket=snap.ticket, recipient=recipient, key=key, params=params,
        cause=f"{snap.n_events}:{key}", not_before=not_before, purpose=purpose,
    )  # fmt: skip
    plan.outbox.append(o)
    if event:
        payload = {"key": key, "outbound_id": o.id}
        plan.changes.append(AddEvent(snap.ticket.id, TicketEvent("push", "system", now, payload)))
