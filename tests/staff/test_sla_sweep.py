"""The SLA sweep: the scheduler sets ``sulai_sla_overdue_tickets`` to the number of open tickets
past their reply deadline, from the store's deadline index, every ``sla_every_s`` seconds."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from conversation.catalogue import Catalogue
from conversation.settings import default_settings
from gateway import metrics
from gateway.config import TenantSettings
from gateway.intake import Intake
from gateway.scheduler import Scheduler, SlaSweep
from gateway.staff.context import StaffContext
from store.casestore import CaseStore
from store.model import NewTicket, TicketStatus
from tests.staff.conftest import MORNING, Clock

S = TicketStatus


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("sulai_sla_overdue_tickets", {"tenant": "default"})


async def file(store: CaseStore, deadline: float | None) -> str:
    new = NewTicket(
        channel="sms", citizen="tel:+8613812345678", description="路灯坏了", reply_deadline=deadline
    )
    return await store.create_ticket("default", new)


async def some_tickets(store: CaseStore) -> None:
    await file(store, MORNING - 60)  # overdue
    await file(store, MORNING + 3600)  # due in an hour
    await file(store, None)  # no deadline promised
    done = await file(store, MORNING - 60)  # overdue, but answered and resolved: not counted
    await store.change_status("default", done, S.ASSIGNED, actor="staff:1", fields={"unit": "城管局"})
    await store.change_status("default", done, S.RESOLVED, actor="staff:1")


async def test_sweep_counts_open_tickets_past_their_deadline(redis_client: aioredis.Redis) -> None:
    clock = Clock()
    store = CaseStore(redis_client, clock=clock)
    await some_tickets(store)
    sweep = SlaSweep(redis_client, "default", clock=clock)
    assert await sweep.run_once() == 1
    assert gauge() == 1
    clock.now += 2 * 3600
    assert await sweep.run_once() == 2
    assert gauge() == 2


async def test_scheduler_runs_the_sweep_periodically(redis_client: aioredis.Redis) -> None:
    clock = Clock()
    store = CaseStore(redis_client, clock=clock)
    intake = Intake(redis_client, store, default_settings(), Catalogue.load(), TenantSettings(), clock=clock)
    staff = StaffContext(redis=redis_client, clock=clock)
    scheduler = Scheduler(redis_client, "default", intake, staff, clock=clock, idle_s=0.01, sla_every_s=0.05)
    metrics.sla_overdue.labels("default").set(-1)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await some_tickets(store)
        for _ in range(200):
            if gauge() == 1:
                break
            await asyncio.sleep(0.01)
        assert gauge() == 1
        clock.now += 2 * 3600  # the next sweep sees the second ticket overdue too
        for _ in range(200):
            if gauge() == 2:
                break
            await asyncio.sleep(0.01)
        assert gauge() == 2
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
