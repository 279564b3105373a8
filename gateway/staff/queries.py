"""The staff API's one write path and its reads, on the case store (store.casestore/store.apply).

Every staff action is ONE :class:`store.apply.Write`: the ticket changes (status moves are checked
against the life cycle inside the script), their events, index moves, day counters, work-queue
ops, outbox entries, timers, the citizen's conversation patch and the Idempotency-Key mark all
commit together or not at all. The decision is taken on a snapshot read just before; the write
carries a guard (the ticket's ``updated_at`` and event count, :attr:`Write.guards`) and the
conversation version, so if anything moved in between the script refuses and the decision is
taken again on fresh data (the optimistic equivalent of WATCH/MULTI).

Because the guard makes the snapshot exact, :func:`preview` computes the ticket as it will be
after the write, which is what the response (and the stored idempotent reply) shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from channels.base import MediaRef, Outbound, Purpose, address_channel
from conversation.state import ConversationState
from gateway.staff import idempotency
from gateway.staff.context import StaffContext
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER, StaleTicket, TimerSet, Write, WriteConflict
from store.model import (
    AddEvent,
    ExtendField,
    IncrField,
    NewTicket,
    SetFields,
    SetStatus,
    Ticket,
    TicketChange,
    TicketEvent,
    TicketStatus,
    can_move,
    encode_field,
    media_to_json,
    new_ticket_fields,
    ticket_from_hash,
    ticket_to_hash,
)

MAX_RETRIES = 20
ConvPatch = Callable[[ConversationState], ConversationState]
Responder = Callable[[Ticket], tuple[int, Any]]


def _s(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# --- reads ------------------------------------------------------------------------------------


async def load_ticket(ctx: StaffContext, ticket_id: str) -> Ticket | None:
    return await ctx.cases.get_ticket(ctx.tid, ticket_id)


async def timeline(ctx: StaffContext, ticket_id: str) -> list[dict[str, Any]]:
    """Every event of a ticket, oldest first; events naming an outbound carry its delivery
    status. No delivery record yet means the dispatcher has not picked the entry up: queued."""
    events = [e.to_json() for e in await ctx.cases.timeline(ctx.tid, ticket_id)]
    oids = [
        (i, str(e["payload"]["outbound_id"])) for i, e in enumerate(events) if e["payload"].get("outbound_id")
    ]
    if oids:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for _, oid in oids:
                pipe.hgetall(keys.outbound_record(ctx.tid, oid))
            records = await pipe.execute()
        for (i, _), record in zip(oids, records, strict=True):
            events[i]["delivery"] = {_s(k): _s(v) for k, v in record.items()} or {"status": "queued"}
    return events


def contact_address(ticket: Ticket) -> str | None:
    """Where the citizen is reached (and whose conversation holds their survey): the address
    that filed it, else another reachable address they gave."""
    for address in (ticket.citizen, *ticket.addresses):
        if address and address_channel(address) != "none":
            return address
    return None


# --- what a decision writes ---------------------------------------------------------------------


@dataclass
class Plan:
    """What one staff decision writes (see the module docstring). ``conversation`` patches the
    state of the ticket's contact address; it is skipped when the citizen has none."""

    changes: list[TicketChange] = field(default_factory=list)
    outbox: list[Outbound] = field(default_factory=list)
    timers_set: list[TimerSet] = field(default_factory=list)
    timers_cancel: list[str] = field(default_factory=list)
    conversation: ConvPatch | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    ticket: Ticket
    updated_raw: str  # updated_at exactly as stored: the guard compares strings
    n_events: int


@dataclass(frozen=True, slots=True)
class Done:
    """A committed (or replayed) action: the ticket after it, and the exact response when an
    idempotency mark was written or found."""

    ticket: Ticket
    response: web.Response | None = None


def preview(ticket: Ticket, changes: Iterable[TicketChange], now: float) -> Ticket:
    """The ticket after ``changes`` (those naming it), mirroring store/scripts/apply.lua."""
    h = ticket_to_hash(ticket)
    stamp = repr(now)
    for c in changes:
        if getattr(c, "ticket_id", None) != ticket.id:
            continue
        if isinstance(c, SetStatus):
            if can_move(TicketStatus(h["status"]), c.to):
                h.update(status=c.to.value, updated_at=stamp)
        elif isinstance(c, SetFields):
            h.update({k: encode_field(k, v) for k, v in c.values.items()}, updated_at=stamp)
        elif isinstance(c, ExtendField):
            items = json.loads(h.get(c.name) or "[]")
            for raw in c.items:
                item = media_to_json(raw) if isinstance(raw, MediaRef) else raw
                ids = [i.get("media_id") for i in items if isinstance(i, dict)]
                dupe = item.get("media_id") in ids if isinstance(item, dict) else item in items
                if not (c.unique and dupe):
                    items.append(item)
            if items:
                h.update({c.name: json.dumps(items, ensure_ascii=False)}, updated_at=stamp)
        elif isinstance(c, IncrField):
            h.update({c.name: str(int(h.get(c.name) or 0) + c.by)}, updated_at=stamp)
    return ticket_from_hash(h)


def expected_events(
    before: dict[str, TicketStatus], changes: Iterable[TicketChange], now: float
) -> list[tuple[str, TicketEvent]]:
    """The events the script will append, in order (status moves log themselves)."""
    status = dict(before)
    out: list[tuple[str, TicketEvent]] = []
    for c in changes:
        if isinstance(c, SetStatus) and c.ticket_id in status and can_move(status[c.ticket_id], c.to):
            payload = {**c.payload, "from": status[c.ticket_id].value, "to": c.to.value}
            out.append((c.ticket_id, TicketEvent("status", c.actor, now, payload)))
            status[c.ticket_id] = c.to
        elif isinstance(c, AddEvent):
            out.append((c.ticket_id, c.event))
    return out


def event_outbounds(
    tenant: str, subs: Sequence[str], events: Sequence[tuple[str, TicketEvent]], first: dict[str, int]
) -> list[Outbound]:
    """One WEBHOOK outbound per (subscription, event); the id is the event's position in its
    ticket's log, so a replayed decision cannot queue a second copy."""
    out: list[Outbound] = []
    seq = dict(first)
    for tid, ev in events:
        n = seq.get(tid, 0)
        seq[tid] = n + 1
        body = json.dumps({"ticket_id": tid, "seq": n, "event": ev.to_json()}, ensure_ascii=False)
        out += [
            Outbound(
                id=f"{tid}:wh:{sub}:{n}", tenant=tenant, recipient=f"webhook:{sub}", purpose=Purpose.WEBHOOK,
                key="webhook.event", params={"body": body}, ticket_id=tid,
            )
            for sub in subs
        ]  # fmt: skip
    return out


# --- the write loop -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    snapshots: dict[str, Snapshot]
    conv_version: int
    conv_state: bytes | None
    subs: list[str]


async def _read(ctx: StaffContext, ticket_ids: Sequence[str], address: str | None) -> _Read:
    """Tickets, their event counts, the citizen's conversation and the webhook subscriptions:
    one round trip."""
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for tid in ticket_ids:
            pipe.hgetall(keys.ticket(ctx.tid, tid))
            pipe.llen(keys.ticket_events(ctx.tid, tid))
        pipe.hkeys(keys.webhooks(ctx.tid))
        if address:
            pipe.hmget(keys.conversation(ctx.tid, address), ["version", "state"])
        rows = await pipe.execute()
    snaps: dict[str, Snapshot] = {}
    for i, tid in enumerate(ticket_ids):
        raw, n = rows[2 * i], rows[2 * i + 1]
        if raw:
            updated = _s(raw.get(b"updated_at", raw.get("updated_at", b"")))
            snaps[tid] = Snapshot(ticket_from_hash(raw), updated, int(n))
    subs = [_s(s) for s in rows[2 * len(ticket_ids)]]
    version, state = rows[-1] if address else (None, None)
    return _Read(snaps, int(version or 0), state, subs)


def _stored(fp: str, status: int, payload: Any) -> tuple[bytes, str]:
    body = json.dumps(payload, ensure_ascii=False)
    record = {"state": "done", "fp": fp, "status": status, "body": body}
    return json.dumps(record, ensure_ascii=False).encode(), body


def _conversation(plan: Plan, read: _Read, address: str | None) -> tuple[str, int, bytes] | None:
    if plan.conversation is None or address is None:
        return None
    state = plan.conversation(ConversationState.from_json(read.conv_state))
    return address, read.conv_version, state.to_json()


async def mutate(
    ctx: StaffContext,
    ticket: Ticket,
    decide: Callable[[dict[str, Snapshot], float], Plan],
    *,
    actor: str,
    also: Sequence[str] = (),
    idem: idempotency.Mark | None = None,
    respond: Responder | None = None,
) -> Done:
    """Decide on fresh snapshots of ``ticket`` (and ``also``), write, retry on a conflict.

    ``decide(snapshots, now)`` may raise (IllegalTransition, ApiError, …): nothing is written.
    With ``idem`` the Idempotency-Key mark and ``respond(ticket_after)`` go into the same write.
    """
    address = contact_address(ticket)
    for _ in range(MAX_RETRIES):
        now = ctx.clock()
        read = await _read(ctx, [ticket.id, *also], address)
        if ticket.id not in read.snapshots:
            raise KeyError(ticket.id)
        fresh = read.snapshots[ticket.id].ticket
        if contact_address(fresh) != address:
            address = contact_address(fresh)
            continue
        plan = decide(read.snapshots, now)
        before = {t: s.ticket.status for t, s in read.snapshots.items()}
        events = expected_events(before, plan.changes, now)
        first = {t: s.n_events for t, s in read.snapshots.items()}
        after = preview(fresh, plan.changes, now)
        write = Write(
            tenant=ctx.tid, actor=actor, changes=list(plan.changes),
            outbox=[*plan.outbox, *event_outbounds(ctx.tid, read.subs, events, first)],
            timers_set=list(plan.timers_set), timers_cancel=list(plan.timers_cancel),
            conversation=_conversation(plan, read, address),
            guards={t: (s.updated_raw, s.n_events) for t, s in read.snapshots.items()},
        )  # fmt: skip
        body = ""
        if idem is not None and respond is not None:
            status, payload = respond(after)
            reply, body = _stored(idem.fingerprint, status, payload)
            write.idempotency = (idem.external_id, reply)
        try:
            result = await ctx.cases.applier.run(write, now)
        except (StaleTicket, WriteConflict):
            continue
        if result.duplicate_reply is not None:
            assert idem is not None
            return Done(fresh, idempotency.replay(result.duplicate_reply, idem.fingerprint))
        if idem is not None and respond is not None:
            return Done(after, idempotency.response(status, body))
        return Done(after)
    raise RuntimeError(f"ticket {ticket.id} kept changing under us")


async def create(
    ctx: StaffContext,
    new: NewTicket,
    *,
    actor: str,
    changes: Sequence[TicketChange] = (),
    outbox: Sequence[Outbound] = (),
    idem: idempotency.Mark | None = None,
    respond: Responder | None = None,
) -> Done:
    """File a ticket (status new) in one write. ``changes``/``outbox``/``respond`` name the new
    ticket as TICKET_ID_PLACEHOLDER (``new.query_code`` must be set: the response shows it)."""
    assert new.query_code, "draw the query code first: the response shows it"
    now = ctx.clock()
    ph = TICKET_ID_PLACEHOLDER
    fields = new_ticket_fields(new, ticket_id=ph, tenant=ctx.tid, query_code=new.query_code, now=now)
    draft = preview(ticket_from_hash(fields), changes, now)
    created = TicketEvent(
        "created",
        actor,
        now,
        {"channel": new.channel, "entry_point": new.entry_point, "intake_type": new.intake_type},
    )
    events = [(ph, created), *expected_events({ph: TicketStatus.NEW}, changes, now)]
    subs = [_s(s) for s in await ctx.redis.hkeys(keys.webhooks(ctx.tid))]
    write = Write(
        tenant=ctx.tid,
        actor=actor,
        new_ticket=new,
        changes=list(changes),
        outbox=[*outbox, *event_outbounds(ctx.tid, subs, events, {ph: 0})],
    )
    body = ""
    if idem is not None and respond is not None:
        status, payload = respond(draft)
        reply, body = _stored(idem.fingerprint, status, payload)
        write.idempotency = (idem.external_id, reply)
    result = await ctx.cases.applier.run(write, now)
    if result.duplicate_reply is not None:
        assert idem is not None
        return Done(draft, idempotency.replay(result.duplicate_reply, idem.fingerprint))
    assert result.ticket_id is not None
    ticket = replace(draft, id=result.ticket_id)
    if idem is not None and respond is not None:
        return Done(ticket, idempotency.response(status, body.replace(ph, result.ticket_id)))
    return Done(ticket)
