"""Units, statistics, dead letters, the call-back list and the supervision queue."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from gateway.staff import queries, survey
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.queries import Plan, Snapshot
from gateway.staff.routing import Call, Result
from gateway.staff.tickets_read import ticket_view, visible_ticket
from store import keys
from store.model import OPEN_STATUSES, AddEvent, IllegalTransition, Ticket, TicketEvent
from store.outbox import Outbox
from store.outbox_codec import outbound_to_json

UNIT_ID_RE = re.compile(r"[^{}\s/][^{}/]{0,99}")
UNIT_CREATE = (
    Field("name", required=True, min_length=1, max_length=100),
    Field("id", min_length=1, max_length=100, description="stable id; defaults to the name"),
)
UNIT_RENAME = (Field("name", required=True, min_length=1, max_length=100),)
STATS_QUERY = (
    Field("from", kind="date", description="first local day (default: 30 days ago)"),
    Field("to", kind="date", description="last local day (default: today)"),
    Field("period", enum=("day", "month"), description="grouping of by_period (default day)"),
)
MAX_STATS_DAYS = 400
CHANNELS = ("wechat", "sms", "email", "offline")
LIST_LIMIT = (Field("limit", kind="integer", minimum=1, maximum=500),)
CALLBACK_BODY = (
    Field("reached", kind="boolean", required=True, description="whether the citizen answered the call"),
    Field("rating", kind="integer", minimum=1, maximum=5, description="the rating given on the phone"),
    Field("comment", max_length=2000),
)
ENTRY_ID_RE = re.compile(r"\d{1,20}-\d{1,20}")
# Day counters written by the apply script (store/scripts/apply.lua): tickets counted once on
# the day they were first resolved / first answered (replied or resolved); "resolved" itself
# counts every move into resolved, and "resolved:<unit>" each unit's resolutions.
TICKETS_RESOLVED, TICKETS_ANSWERED = "tickets_resolved", "tickets_answered"
PERIOD_COUNTERS = {
    "received": "received",
    TICKETS_RESOLVED: "resolved",
    TICKETS_ANSWERED: "resolved_or_answered",
}
PERIOD_FIELDS = tuple(PERIOD_COUNTERS.values())


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


async def list_units(ctx: StaffContext, call: Call) -> Result:
    raw = await ctx.redis.hgetall(keys.units(ctx.tid))
    units = [{"id": _s(k), **json.loads(v)} for k, v in raw.items()]
    return 200, {"items": sorted(units, key=lambda u: u["id"])}


async def create_unit(ctx: StaffContext, call: Call) -> Result:
    unit_id = call.body.get("id") or call.body["name"]
    if not UNIT_ID_RE.fullmatch(unit_id):
        raise ApiError(
            400, "invalid_value", "unit id must not contain braces, slashes or start with a space", "id"
        )
    record = json.dumps({"name": call.body["name"]}, ensure_ascii=False)
    if not await ctx.redis.hsetnx(keys.units(ctx.tid), unit_id, record):
        raise ApiError(409, "exists", f"unit {unit_id!r} exists", "id")
    return 201, {"id": unit_id, "name": call.body["name"]}


async def rename_unit(ctx: StaffContext, call: Call) -> Result:
    unit_id = call.path["unit_id"]
    if not UNIT_ID_RE.fullmatch(unit_id) or not await ctx.redis.hexists(keys.units(ctx.tid), unit_id):
        raise not_found("unit")
    await ctx.redis.hset(
        keys.units(ctx.tid), unit_id, json.dumps({"name": call.body["name"]}, ensure_ascii=False)
    )
    return 200, {"id": unit_id, "name": call.body["name"]}


def _days(ctx: StaffContext, q: dict[str, Any]) -> list[dt.date]:
    today = dt.datetime.fromtimestamp(ctx.clock(), ctx.tenant.zone).date()
    last = q.get("to") or today
    first = q.get("from") or last - dt.timedelta(days=29)
    if first > last:
        raise ApiError(400, "invalid_value", "from must not be after to", "from")
    if (last - first).days >= MAX_STATS_DAYS:
        raise ApiError(400, "out_of_range", f"at most {MAX_STATS_DAYS} days per query", "from")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _rate(satisfied: int, rated: int) -> float | None:
    return round(satisfied / rated, 4) if rated else None


async def stats(ctx: StaffContext, call: Call) -> Result:
    """Totals like the seed article's, counting tickets: received (by channel), resolved, resolved
    or answered (each ticket once, on the day it first happened), in progress; by period and by
    unit; satisfaction rate = satisfied ratings / ratings. ``resolutions`` counts resolution
    events: a re-dispatched ticket resolved twice is one resolved ticket and two resolutions,
    one per unit (``by_unit[].resolutions``). ``assigned_now`` is the unit's open work."""
    days = _days(ctx, call.query)
    fmt = "%Y-%m" if call.query.get("period") == "month" else "%Y-%m-%d"
    units = sorted(_s(x) for x in await ctx.redis.hkeys(keys.units(ctx.tid)))
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for d in days:
            pipe.hgetall(keys.counters_day(ctx.tid, d.strftime("%Y%m%d")))
        for status in OPEN_STATUSES:
            pipe.zcard(keys.index_status(ctx.tid, status))
        for u in units:
            pipe.zcard(keys.index_unit_open(ctx.tid, u))
        rows = await pipe.execute()
    open_counts = rows[len(days) : len(days) + len(OPEN_STATUSES)]
    work = rows[len(days) + len(OPEN_STATUSES) :]
    total: dict[str, int] = {}
    by_period: dict[str, dict[str, int]] = {}
    for d, row in zip(days, rows[: len(days)], strict=True):
        period = by_period.setdefault(d.strftime(fmt), dict.fromkeys(PERIOD_FIELDS, 0))
        for k, v in row.items():
            name, n = _s(k), int(v)
            total[name] = total.get(name, 0) + n
            if name in PERIOD_COUNTERS:
                period[PERIOD_COUNTERS[name]] += n
    by_unit = []
    for u, queue in zip(units, work, strict=True):
        rated, sat = total.get(f"rated:{u}", 0), total.get(f"satisfied:{u}", 0)
        by_unit.append(
            {
                "unit": u,
                "assigned_now": int(queue),
                "resolutions": total.get(f"resolved:{u}", 0),
                "rated": rated,
                "satisfied": sat,
                "satisfaction_rate": _rate(sat, rated),
            }
        )
    return 200, {
        "from": days[0].isoformat(),
        "to": days[-1].isoformat(),
        "received": total.get("received", 0),
        "by_channel": {c: total.get(f"received:{c}", 0) for c in CHANNELS},
        "resolved": total.get(TICKETS_RESOLVED, 0),
        "resolved_or_answered": total.get(TICKETS_ANSWERED, 0),
        "resolutions": total.get("resolved", 0),
        "in_progress": sum(int(n) for n in open_counts),
        "rated": total.get("rated", 0),
        "satisfaction_rate": _rate(total.get("satisfied", 0), total.get("rated", 0)),
        "by_period": [{"period": p, **v} for p, v in sorted(by_period.items())],
        "by_unit": by_unit,
    }


async def dead_letters(ctx: StaffContext, call: Call) -> Result:
    letters, cursor = await Outbox(ctx.redis).dead_letters(ctx.tid, limit=int(call.query.get("limit", 100)))
    items = [
        {
            "id": d.entry_id,
            "why": d.why,
            "at": d.at,
            "attempts": d.envelope.attempts,
            "outbound": outbound_to_json(d.envelope.outbound),
        }
        for d in letters
    ]
    return 200, {"items": items, "next_cursor": cursor}


async def retry_dead_letter(ctx: StaffContext, call: Call) -> Result:
    entry_id = call.path["entry_id"]
    if not ENTRY_ID_RE.fullmatch(entry_id) or not await Outbox(ctx.redis).retry_dead(ctx.tid, entry_id):
        raise not_found("dead letter")
    return 200, {"id": entry_id, "requeued": True}


async def _queue(ctx: StaffContext, call: Call, key: str) -> list[dict[str, Any]]:
    limit = int(call.query.get("limit", 100))
    members: Any = await ctx.redis.zrange(key, 0, limit - 1, withscores=True)
    since = {_s(m): float(score) for m, score in members}
    tickets = await ctx.cases.get_tickets(ctx.tid, list(since))
    return [{"since": since[t.id], "ticket": ticket_view(ctx, call.staff, t)} for t in tickets]


async def callbacks(ctx: StaffContext, call: Call) -> Result:
    return 200, {"items": await _queue(ctx, call, keys.callback_list(ctx.tid))}


async def record_callback(ctx: StaffContext, call: Call) -> Result:
    """The outcome of a call-back (回访): a rating given on the phone, or 'not reached'. Either
    is one write with the Idempotency-Key mark; a rating follows the survey policy."""
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    if await ctx.redis.zscore(keys.callback_list(ctx.tid), ticket.id) is None:
        raise ApiError(409, "not_on_callback_list", f"{ticket.id} is not on the call-back list")
    comment = call.body.get("comment", "")

    def respond(after: Ticket) -> tuple[int, Any]:
        return 200, ticket_view(ctx, call.staff, after)

    if not call.body["reached"]:

        def decide(snaps: dict[str, Snapshot], now: float) -> Plan:
            event = TicketEvent("callback", call.staff.actor, now, {"reached": False, "comment": comment})
            return Plan(changes=[AddEvent(ticket.id, event)])

        done = await queries.mutate(
            ctx, ticket, decide, actor=call.staff.actor, idem=call.idem, respond=respond
        )
        return done.response or respond(done.ticket)
    if "rating" not in call.body:
        raise ApiError(400, "missing_field", "rating is required when the citizen was reached", "rating")
    try:
        done = await survey.record_rating(
            ctx, ticket.id, call.body["rating"], comment, call.staff.actor, idem=call.idem, respond=respond
        )
    except (survey.NotAwaitingRating, IllegalTransition) as exc:
        raise ApiError(409, "illegal_transition", str(exc)) from None
    return done.response or respond(done.ticket)


async def supervision(ctx: StaffContext, call: Call) -> Result:
    return 200, {"items": await _queue(ctx, call, keys.supervision_queue(ctx.tid))}
