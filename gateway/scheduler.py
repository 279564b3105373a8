"""The scheduler: fires due timers (draft reminders and expiry, survey reminders and expiry).

Timers live in a per-tenant sorted set; ``claim_due`` removes due members atomically, so when
several gateway processes run a scheduler each timer fires in exactly one of them.

Every ``sla_every_s`` (60 s) it also sweeps the SLA: :class:`SlaSweep` sets the
``sulai_sla_overdue_tickets`` gauge to the number of open tickets past their reply deadline.

A conversation timer becomes an Inbound (kind EVENT, event "timer") fed through intake like any
message, so the dialogue decides what to say and the reply goes out through the outbox. Staff
timers (``staff.…``: survey reminder and expiry) go to the survey module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from channels.base import Inbound, InboundKind, address_channel
from gateway import metrics
from gateway.intake import Intake
from gateway.staff import survey
from gateway.staff.context import StaffContext
from store import keys
from store.timers import DueTimer, Timers

log = logging.getLogger(__name__)
SLA_EVERY_S = 60.0


class SlaSweep:
    """Counts open tickets past their reply deadline into ``metrics.sla_overdue``.

    The apply script keeps ``keys.index_deadline`` (open tickets with a deadline, scored by it)
    with every write, so the count is one ZCOUNT, O(log n) however many tickets are open. The
    alternative, walking the open-status indexes and HMGET-ing each deadline in batches, costs
    a round trip per few hundred tickets every minute and grows with the backlog it measures."""

    def __init__(self, redis: aioredis.Redis, tenant: str, *, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.tenant = tenant
        self.clock = clock

    async def run_once(self) -> int:
        overdue = int(await self.redis.zcount(keys.index_deadline(self.tenant), "-inf", f"({self.clock()!r}"))
        metrics.sla_overdue.labels(self.tenant).set(overdue)
        return overdue


class Scheduler:
    def __init__(
        self,
        redis: aioredis.Redis,
        tenant: str,
        intake: Intake,
        staff: StaffContext,
        *,
        clock: Callable[[], float] = time.time,
        idle_s: float = 1.0,
        sla_every_s: float = SLA_EVERY_S,
    ) -> None:
        self.timers = Timers(redis)
        self.sla = SlaSweep(redis, tenant, clock=clock)
        self.sla_every_s = sla_every_s
        self._sla_due = 0.0  # time.monotonic() of the next sweep: the first round sweeps
        self.tenant = tenant
        self.intake = intake
        self.staff = staff
        self.clock = clock
        self.idle_s = idle_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                fired = await self.fire_due()
            except Exception:
                log.exception("scheduler round failed")
                fired = 0
            await self._sweep_sla()
            if fired == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.idle_s)

    async def _sweep_sla(self) -> None:
        # Monotonic, not self.clock: the period is wall time even when tests move the clock.
        if time.monotonic() < self._sla_due:
            return
        self._sla_due = time.monotonic() + self.sla_every_s
        try:
            await self.sla.run_once()
        except Exception:
            log.exception("SLA sweep failed")

    async def fire_due(self, limit: int = 100) -> int:
        now = self.clock()
        due = await self.timers.claim_due(self.tenant, now, limit)
        for timer in due:
            try:
                await self.fire(timer, now)
            except Exception:
                log.exception("timer failed", extra={"timer": timer.timer_id})
        return len(due)

    async def fire(self, timer: DueTimer, now: float) -> None:
        payload: dict[str, Any] = json.loads(timer.payload)
        kind = str(payload.get("kind", ""))
        if kind.startswith("staff."):
            await survey.handle_timer(self.staff, payload)
            return
        if kind != "conversation":
            log.warning("timer of unknown kind dropped", extra={"timer": timer.timer_id, "kind": kind})
            return
        address = str(payload["address"])
        attrs = {str(k): str(v) for k, v in payload.items() if k not in ("kind", "address")}
        inbound = Inbound(
            channel=address_channel(address),
            account="",
            sender=address,
            # Claims are exclusive, so the claim time makes a fresh id for a re-armed timer.
            external_id=f"timer:{timer.timer_id}:{now!r}",
            kind=InboundKind.EVENT,
            event="timer",
            received_at=datetime.fromtimestamp(now, UTC),
            tenant=self.tenant,
            attrs=attrs,
        )
        await self.intake.handle(inbound, deadline=0.0)
