"""Ticket reads and writes the staff API needs, on the key layout of ``store/keys.py``.

Written here because the staff API had to work before the case store module landed; when
``store`` offers the same operations, these functions are the seam to switch over. Every write
is one MULTI/EXEC under WATCH of the ticket hash: the field changes, the event, the index moves,
the outbox entries and the timers commit together or not at all (DESIGN.md: "ticket change +
event + outbox entry, one transaction"). A concurrent change makes EXEC fail and the whole
decision is taken again on fresh data.

Ticket hash encoding: plain strings for scalars, numbers as their decimal text, JSON for the
structured fields listed in ``JSON_FIELDS``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from channels.base import Outbound, Purpose, address_channel
from store import keys
from store.model import TicketEvent, TicketStatus
from store.outbox_codec import Envelope
from store.ticketid import format_ticket_id, new_query_code

JSON_FIELDS = frozenset({"addresses", "attachments", "failed_units", "provenance", "links"})
NUMBER_FIELDS = frozenset({"created", "updated", "attempt", "rating", "latitude", "longitude"})
SEQ_TTL = 2 * 24 * 3600
MAX_RETRIES = 20


def _s(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def decode_ticket(raw: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name, text = _s(k), _s(v)
        if name in JSON_FIELDS:
            out[name] = json.loads(text) if text else None
        elif name in NUMBER_FIELDS:
            out[name] = float(text) if text not in ("", "None") else None
        else:
            out[name] = text
    return out


def encode_fields(fields: dict[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, value in fields.items():
        if name in JSON_FIELDS:
            out[name] = json.dumps(value, ensure_ascii=False)
        elif value is None:
            out[name] = ""
        else:
            out[name] = repr(value) if isinstance(value, float) else str(value)
    return out


def event_outbounds(
    tenant: str, ticket_id: str, first_index: int, events: Sequence[TicketEvent], subs: Iterable[str]
) -> list[Outbound]:
    """One WEBHOOK outbound per (subscription, event); ids derive from the event's position."""
    out = []
    for sub in subs:
        for i, ev in enumerate(events):
            body = json.dumps(
                {"ticket_id": ticket_id, "seq": first_index + i, "event": ev.to_json()}, ensure_ascii=False
            )
            out.append(
                Outbound(
                    id=f"{ticket_id}:wh:{sub}:{first_index + i}", tenant=tenant, recipient=f"webhook:{sub}",
                    purpose=Purpose.WEBHOOK, key="webhook.event", params={"body": body}, ticket_id=ticket_id,
                )
            )  # fmt: skip
    return out


@dataclass
class Change:
    """What one decision about a ticket writes. ``fields`` may include ``status`` and ``unit``;
    their index moves are derived here, not by the caller."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[TicketEvent] = field(default_factory=list)
    outbounds: list[Outbound] = field(default_factory=list)
    timers: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    cancel_timers: list[str] = field(default_factory=list)
    extra: list[Callable[[Pipeline], object]] = field(default_factory=list)
    result: Any = None


def queue_outbound(pipe: Pipeline, tenant: str, o: Outbound, now: float) -> None:
    """Queue in the store's outbox format (store.outbox_codec.Envelope in stream field ``o``;
    the same envelope is the member of the delayed ZSET while quiet hours hold it back)."""
    entry = Envelope(o).to_json()
    pipe.hset(
        keys.outbound_record(tenant, o.id),
        mapping={"status": "queued", "ticket_id": o.ticket_id or "", "purpose": str(o.purpose)},
    )
    pipe.expire(keys.outbound_record(tenant, o.id), keys.SENT_MARK_TTL)
    if o.not_before > now:
        pipe.zadd(keys.outbox_delayed(tenant), {entry: o.not_before})
    else:
        pipe.xadd(keys.outbox(tenant), {"o": entry})


def set_timer(pipe: Pipeline, tenant: str, timer_id: str, due: float, payload: dict[str, Any]) -> None:
    pipe.zadd(keys.timers(tenant), {timer_id: due})
    pipe.hset(keys.timer_payload(tenant), timer_id, json.dumps(payload, ensure_ascii=False))


def _apply(pipe: Pipeline, tenant: str, ticket: dict[str, Any], change: Change, now: float) -> None:
    tid = ticket["id"]
    created = float(ticket.get("created") or now)
    if change.fields:
        pipe.hset(keys.ticket(tenant, tid), mapping=encode_fields({**change.fields, "updated": now}))
    new_status = change.fields.get("status")
    if new_status and new_status != ticket.get("status"):
        pipe.zrem(keys.index_status(tenant, ticket["status"]), tid)
        pipe.zadd(keys.index_status(tenant, new_status), {tid: created})
    if "unit" in change.fields and change.fields["unit"] != ticket.get("unit"):
        if ticket.get("unit"):
            pipe.zrem(keys.index_unit(tenant, ticket["unit"]), tid)
        if change.fields["unit"]:
            pipe.zadd(keys.index_unit(tenant, change.fields["unit"]), {tid: created})
    for ev in change.events:
        pipe.rpush(keys.ticket_events(tenant, tid), json.dumps(ev.to_json(), ensure_ascii=False))
    for o in change.outbounds:
        queue_outbound(pipe, tenant, o, now)
    for timer_id, due, payload in change.timers:
        set_timer(pipe, tenant, timer_id, due, payload)
    for timer_id in change.cancel_timers:
        pipe.zrem(keys.timers(tenant), timer_id)
        pipe.hdel(keys.timer_payload(tenant), timer_id)
    for fn in change.extra:
        fn(pipe)


async def load_ticket(redis: aioredis.Redis, tenant: str, ticket_id: str) -> dict[str, Any] | None:
    raw = await redis.hgetall(keys.ticket(tenant, ticket_id))
    return decode_ticket(raw) if raw else None


async def mutate(
    redis: aioredis.Redis,
    tenant: str,
    ticket_id: str,
    decide: Callable[[dict[str, Any], int], Change],
    now: float,
) -> tuple[dict[str, Any], Change]:
    """Load the ticket under WATCH, let ``decide(ticket, n_events)`` say what changes, commit.

    ``decide`` may raise (illegal move, wrong input): nothing is written then. Returns the ticket
    as it is after the change, and the change.
    """
    tkey = keys.ticket(tenant, ticket_id)
    for _ in range(MAX_RETRIES):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(tkey)
                raw = await pipe.hgetall(tkey)
                if not raw:
                    raise KeyError(ticket_id)
                ticket = decode_ticket(raw)
                n_events = await pipe.llen(keys.ticket_events(tenant, ticket_id))
                change = decide(ticket, int(n_events))
                subs = [_s(s) for s in await pipe.hkeys(keys.webhooks(tenant))]
                change.outbounds += event_outbounds(tenant, ticket_id, int(n_events), change.events, subs)
                pipe.multi()  # type: ignore[no-untyped-call]
                _apply(pipe, tenant, ticket, change, now)
                await pipe.execute()
            except WatchError:
                continue
        ticket.update(change.fields)
        return ticket, change
    raise RuntimeError(f"ticket {ticket_id} kept changing under us")


async def create_ticket(
    redis: aioredis.Redis,
    tenant: str,
    prefix: str,
    zone: ZoneInfo,
    fields: dict[str, Any],
    event: TicketEvent,
    outbounds: Callable[[str, str], Iterable[Outbound]],
    now: float,
) -> dict[str, Any]:
    """File a new ticket; ``outbounds(ticket_id, query_code)`` builds the messages to queue."""
    local = dt.datetime.fromtimestamp(now, zone)
    seq_key = keys.ticket_seq(tenant, local.strftime("%y%m%d"))
    seq = int(await redis.incr(seq_key))
    await redis.expire(seq_key, SEQ_TTL)
    tid = format_ticket_id(prefix, local.date(), seq)
    code = new_query_code()
    ticket = {**fields, "id": tid, "tenant": tenant, "status": str(TicketStatus.NEW), "query_code": code}
    ticket.update({"created": now, "updated": now, "attempt": 1.0})
    channel = str(fields.get("channel") or "offline")
    day = keys.counters_day(tenant, local.strftime("%Y%m%d"))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.ticket(tenant, tid), mapping=encode_fields(ticket))
        pipe.rpush(keys.ticket_events(tenant, tid), json.dumps(event.to_json(), ensure_ascii=False))
        pipe.zadd(keys.index_status(tenant, str(TicketStatus.NEW)), {tid: now})
        pipe.zadd(keys.index_created(tenant), {tid: now})
        for address in ticket.get("addresses") or []:
            pipe.zadd(keys.index_citizen(tenant, address), {tid: now})
        if ticket.get("entered_by"):
            pipe.zadd(keys.index_entered_by(tenant, ticket["entered_by"]), {tid: now})
        pipe.hincrby(day, "received", 1)
        pipe.hincrby(day, f"received:{channel}", 1)
        pipe.expire(day, keys.DAY_COUNTER_TTL)
        subs = [_s(s) for s in await redis.hkeys(keys.webhooks(tenant))]
        for o in [*outbounds(tid, code), *event_outbounds(tenant, tid, 0, [event], subs)]:
            queue_outbound(pipe, tenant, o, now)
        await pipe.execute()
    return ticket


async def timeline(redis: aioredis.Redis, tenant: str, ticket_id: str) -> list[dict[str, Any]]:
    """Every event of a ticket, oldest first; outbound events carry their delivery status."""
    events = [json.loads(_s(e)) for e in await redis.lrange(keys.ticket_events(tenant, ticket_id), 0, -1)]
    for ev in events:
        oid = (ev.get("payload") or {}).get("outbound_id")
        if oid:
            record = await redis.hgetall(keys.outbound_record(tenant, oid))
            ev["delivery"] = {_s(k): _s(v) for k, v in record.items()} or {"status": "unknown"}
    return events


def count_day(pipe: Pipeline, tenant: str, zone: ZoneInfo, now: float, *names: str) -> None:
    day = keys.counters_day(tenant, dt.datetime.fromtimestamp(now, zone).strftime("%Y%m%d"))
    for name in names:
        pipe.hincrby(day, name, 1)
    pipe.expire(day, keys.DAY_COUNTER_TTL)


def contact_address(ticket: dict[str, Any]) -> str | None:
    """Where the citizen is reached: the address that filed it, else a phone given."""
    citizen = ticket.get("citizen") or ""
    if citizen and address_channel(citizen) != "none":
        return str(citizen)
    for address in ticket.get("addresses") or []:
        if address_channel(address) != "none":
            return str(address)
    return None


async def patch_conversation(
    redis: aioredis.Redis, tenant: str, address: str, set_keys: dict[str, Any], drop_keys: Iterable[str] = ()
) -> None:
    """Set (or drop) top-level keys of a citizen's conversation state, bumping its version so a
    turn that read the old state fails its version check and reruns on the new one. Used for the
    pending survey and a staff question the engine relays."""
    ckey = keys.conversation(tenant, address)
    for _ in range(MAX_RETRIES):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(ckey)
                raw = await pipe.hgetall(ckey)
                data = {_s(k): _s(v) for k, v in raw.items()}
                state = json.loads(data["state"]) if data.get("state") else {}
                state.update(set_keys)
                for name in drop_keys:
                    state.pop(name, None)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(ckey, "state", json.dumps(state, ensure_ascii=False))
                pipe.hincrby(ckey, "version", 1)
                pipe.expire(ckey, keys.CONVERSATION_TTL)
                await pipe.execute()
                return
            except WatchError:
                continue
    raise RuntimeError(f"conversation of {address} kept changing under us")
