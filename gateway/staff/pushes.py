"""Status pushes: each citizen-visible change becomes an Outbound to the citizen's channel.

The message is a catalogue key plus parameters; the dispatcher renders it per channel (short
SMS, threaded email, WeChat template outside the 48 h window). Catalogue keys used here
(``conversation/catalogue/*.toml`` must define them):

``status.accepted`` {ticket_id} · ``status.assigned`` {ticket_id, unit} · ``status.replied``
{ticket_id, unit, text} · ``status.resolved`` {ticket_id, text} · ``status.redispatched``
{ticket_id, attempt} · ``status.rejected`` {ticket_id, reason} · ``status.merged`` {ticket_id,
into} · ``status.more_info`` {ticket_id, question} · ``ticket.created_offline`` {ticket_id,
query_code} · ``survey.ask`` {ticket_id} · ``survey.reminder`` {ticket_id}.

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
from store import keys

ACTIVE_WINDOW = 15 * 60


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
    ticket: Mapping[str, object],
    recipient: str,
    key: str,
    params: Mapping[str, str],
    cause: str,
    not_before: float = 0.0,
    purpose: Purpose = Purpose.STATUS,
) -> Outbound:
    """One push. ``cause`` makes the id deterministic (ticket + event number), so a replayed
    staff request cannot queue a second copy."""
    tid = str(ticket["id"])
    return Outbound(
        id=f"{tid}:{cause}",
        tenant=tenant,
        recipient=recipient,
        purpose=purpose,
        key=key,
        params={"ticket_id": tid, **params},
        ticket_id=tid,
        not_before=not_before,
        language=str(ticket.get("language") or "zh-CN"),
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
