"""The case store: tickets, their event logs, indexes and day counters on redis.asyncio.

Reads are plain commands (pipelined where several are needed); every write goes through the one
atomic script of :mod:`store.apply`, so a status change, its event, its index moves, its counters,
the outbound messages it causes and the timers it sets or cancels happen together or not at all.
Business rules (who may do what) belong to the callers; the store keeps integrity: legal
transitions only, consistent indexes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import redis.asyncio as aioredis

from channels.base import Outbound
from store import keys
from store.apply import Applier, TenantIds, TimerSet, Write, WriteResult
from store.model import (
    AddEvent,
    NewTicket,
    SetFields,
    SetStatus,
    Ticket,
    TicketChange,
    TicketEvent,
    TicketStatus,
    ticket_from_hash,
)

IndexName = Literal["status", "unit", "unit_open", "citizen", "created", "entered_by"]
Clock = Callable[[], float]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CaseStore:
    """One per Redis client. ``tenants`` maps tenant -> :class:`TenantIds` (prefix, time zone);
    ``None`` gives every tenant the defaults (prefix SN, Asia/Shanghai)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        clock: Clock = time.time,
        tenants: Mapping[str, TenantIds] | None = None,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.applier = Applier(redis, tenants)

    # --- writes -------------------------------------------------------------------------------

    async def apply(self, write: Write) -> WriteResult:
        """Apply any :class:`Write` atomically (the general form of every method below)."""
        return await self.applier.run(write, self.clock())

    async def create_ticket(
        self,
        tenant: str,
        new: NewTicket,
        *,
        actor: str = "system",
        changes: Sequence[TicketChange] = (),
        outbox: Sequence[Outbound] = (),
        timers_set: Sequence[TimerSet] = (),
    ) -> str:
        """File a ticket (status ``new``); returns its id. ``changes``, ``outbox`` and timer
        payloads may name the new ticket as :data:`store.apply.TICKET_ID_PLACEHOLDER`."""
        result = await self.apply(
            Write(
                tenant=tenant,
                actor=actor,
                new_ticket=new,
                changes=list(changes),
                outbox=list(outbox),
                timers_set=list(timers_set),
            )
        )
        assert result.ticket_id is not None
        return result.ticket_id

    async def change_status(
        self,
        tenant: str,
        ticket_id: str,
        to: TicketStatus,
        *,
        actor: str,
        payload: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        events: Iterable[TicketEvent] = (),
        outbox: Sequence[Outbound] = (),
        timers_set: Sequence[TimerSet] = (),
        timers_cancel: Sequence[str] = (),
        extra: Sequence[TicketChange] = (),
    ) -> WriteResult:
        """Move a ticket (IllegalTransition if the life cycle forbids it; TicketNotFound), with
        field updates (``unit`` moves the unit index), extra events, messages and timers."""
        changes: list[TicketChange] = [SetStatus(ticket_id, to, actor, dict(payload or {}))]
        if fields:
            changes.append(SetFields(ticket_id, dict(fields)))
        changes += [AddEvent(ticket_id, e) for e in events]
        changes += list(extra)
        return await self.apply(
            Write(
                tenant=tenant,
                actor=actor,
                changes=changes,
                outbox=list(outbox),
                timers_set=list(timers_set),
                timers_cancel=list(timers_cancel),
            )
        )

    async def update_fields(
        self,
        tenant: str,
        ticket_id: str,
        values: Mapping[str, Any],
        *,
        events: Iterable[TicketEvent] = (),
        outbox: Sequence[Outbound] = (),
    ) -> WriteResult:
        changes: list[TicketChange] = [SetFields(ticket_id, dict(values))]
        changes += [AddEvent(ticket_id, e) for e in events]
        return await self.apply(Write(tenant=tenant, changes=changes, outbox=list(outbox)))

    async def apply_changes(
        self,
        tenant: str,
        changes: Sequence[TicketChange],
        *,
        events: Iterable[tuple[str, TicketEvent]] | Iterable[TicketEvent] = (),
        outbox: Sequence[Outbound] = (),
        timers_set: Sequence[TimerSet] = (),
        timers_cancel: Sequence[str] = (),
    ) -> WriteResult:
        """Any list of ticket changes, atomically. Plain ``events`` go to the ticket of the first
        change; ``(ticket_id, event)`` pairs name their ticket."""
        all_changes = list(changes)
        first = next((c.ticket_id for c in changes if hasattr(c, "ticket_id") and c.ticket_id), "")
        for e in events:
            tid, event = e if isinstance(e, tuple) else (first, e)
            all_changes.append(AddEvent(tid, event))
        return await self.apply(
            Write(
                tenant=tenant,
                changes=all_changes,
                outbox=list(outbox),
                timers_set=list(timers_set),
                timers_cancel=list(timers_cancel),
            )
        )

    async def append_event(
        self, tenant: str, ticket_id: str, event: TicketEvent, *, outbox: Sequence[Outbound] = ()
    ) -> WriteResult:
        return await self.apply(
            Write(tenant=tenant, changes=[AddEvent(ticket_id, event)], outbox=list(outbox))
        )

    # --- reads ---------------------------------------------------------------------------------

    async def get_ticket(self, tenant: str, ticket_id: str) -> Ticket | None:
        raw = await self.redis.hgetall(keys.ticket(tenant, ticket_id))
        return ticket_from_hash(raw) if raw else None

    async def get_tickets(self, tenant: str, ticket_ids: Sequence[str]) -> list[Ticket]:
        """Several tickets in one round trip, in the given order; unknown ids are left out."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for t in ticket_ids:
                pipe.hgetall(keys.ticket(tenant, t))
            raws = await pipe.execute()
        return [ticket_from_hash(r) for r in raws if r]

    async def timeline(
        self, tenant: str, ticket_id: str, start: int = 0, stop: int = -1
    ) -> list[TicketEvent]:
        raw = await self.redis.lrange(keys.ticket_events(tenant, ticket_id), start, stop)
        return [TicketEvent.from_json(json.loads(r)) for r in raw]

    def _index_key(self, tenant: str, by: IndexName, value: str) -> str:
        if by == "status":
            return keys.index_status(tenant, TicketStatus(value).value)
        if by == "unit":
            return keys.index_unit(tenant, value)
        if by == "unit_open":  # the unit's open work (assigned/replied), kept by the apply script
            return keys.index_unit_open(tenant, value)
        if by == "citizen":
            return keys.index_citizen(tenant, value)
        if by == "entered_by":  # tickets a staff member entered on a citizen's behalf (QueueAdd)
            return keys.index_entered_by(tenant, value)
        return keys.index_created(tenant)

    async def list_tickets(
        self,
        tenant: str,
        by: IndexName = "created",
        value: str = "",
        cursor: str | None = None,
        limit: int = 50,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[str], str | None]:
        """Ticket ids from one index, newest first, ``limit`` per page. ``cursor`` is the
        ``next_cursor`` of the previous page (None when there is no further page). Ties on the
        creation time are ordered by id, so a page boundary never skips or repeats a ticket.
        One round trip per page."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1..1000")
        key = self._index_key(tenant, by, value)
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        async with self.redis.pipeline(transaction=False) as pipe:
            if cursor is None:
                pipe.zrange(key, high, low, byscore=True, desc=True, offset=0, num=limit + 1, withscores=True)
                rows = (await pipe.execute())[0]
            else:
                score_s, _, member = cursor.partition("|")
                pipe.zrange(key, score_s, score_s, byscore=True, desc=True, withscores=True)
                top = min(float(score_s), float(high)) if high != "+inf" else float(score_s)
                pipe.zrange(
                    key, f"({top!r}", low, byscore=True, desc=True, offset=0, num=limit + 1, withscores=True
                )
                ties, older = await pipe.execute()
                rows = [r for r in ties if _s(r[0]) < member] + list(older)
        page = [(_s(m), float(sc)) for m, sc in rows[:limit]]
        next_cursor = f"{page[-1][1]!r}|{page[-1][0]}" if len(rows) > limit else None
        return [m for m, _ in page], next_cursor

    async def count(self, tenant: str, by: IndexName = "created", value: str = "") -> int:
        return int(await self.redis.zcard(self._index_key(tenant, by, value)))

    async def day_stats(self, tenant: str, first: dt.date, last: dt.date) -> dict[str, dict[str, int]]:
        """Per-day counters (received, received:<channel>, received:<intake type>, accepted,
        assigned, replied, resolved, closed, rejected, redispatched, and any CountDay names) for
        each local day from ``first`` to ``last`` inclusive, plus ``"total"``."""
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        if len(days) > 800:
            raise ValueError("at most 800 days per statistics read")
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in days:
                pipe.hgetall(keys.counters_day(tenant, d.strftime("%Y%m%d")))
            raws = await pipe.execute()
        out: dict[str, dict[str, int]] = {}
        total: dict[str, int] = {}
        for d, raw in zip(days, raws, strict=True):
            row = {_s(k): int(v) for k, v in raw.items()}
            out[d.isoformat()] = row
            for k, v in row.items():
                total[k] = total.get(k, 0) + v
        out["total"] = total
        return out
