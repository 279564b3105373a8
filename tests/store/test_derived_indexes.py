"""Indexes and counters the apply script derives from a ticket's final state after each write:
a unit's open work, open tickets by reply deadline, and statistics that count tickets (first
answer, first resolution) next to the per-unit resolution events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis.asyncio as aioredis

from store import keys
from store.apply import TICKET_ID_PLACEHOLDER
from store.casestore import CaseStore
from store.model import NewTicket, SetFields, SetStatus, TicketStatus

from .conftest import KeyCheck

S = TicketStatus
CITIZEN = "tel:+8613812345678"
DEADLINE = 1796000000.0  # a few days after the test clock's 2026-11-25


def new(**kw: Any) -> NewTicket:
    return NewTicket(channel="sms", citizen=CITIZEN, description="路灯坏了三天了", **kw)


async def open_work(redis: aioredis.Redis, unit: str) -> list[str]:
    members = await redis.zrange(keys.index_unit_open("default", unit), 0, -1)
    return [m.decode() for m in members if isinstance(m, bytes)]


async def move(store: CaseStore, tid: str, to: TicketStatus, **fields: Any) -> None:
    await store.change_status("default", tid, to, actor="staff:1", fields=fields or None)


async def test_unit_open_work_follows_status_and_unit(
    store: CaseStore, redis_client: aioredis.Redis, assert_keys: KeyCheck
) -> None:
    tid = await store.create_ticket("default", new())
    await move(store, tid, S.ACCEPTED)
    assert await open_work(redis_client, "城管局") == []
    await move(store, tid, S.ASSIGNED, unit="城管局")
    assert await open_work(redis_client, "城管局") == [tid]
    await move(store, tid, S.REPLIED)
    assert await open_work(redis_client, "城管局") == [tid]
    await move(store, tid, S.ASSIGNED, unit="住建局")  # transfer
    assert (await open_work(redis_client, "城管局"), await open_work(redis_client, "住建局")) == ([], [tid])
    await move(store, tid, S.RESOLVED)
    assert await open_work(redis_client, "住建局") == []  # done: waiting for the citizen's rating
    # The unit still owns the ticket (its members see it): the unit index keeps it.
    assert (await store.list_tickets("default", "unit", "住建局"))[0] == [tid]
    await move(store, tid, S.CLOSED)
    await move(store, tid, S.ACCEPTED)  # reopened: back with the dispatcher, unit field kept
    assert await open_work(redis_client, "住建局") == []
    await move(store, tid, S.ASSIGNED, unit="城管局")
    assert await open_work(redis_client, "城管局") == [tid]
    await move(store, tid, S.RESOLVED)
    await move(store, tid, S.REDISPATCHED, unit="")
    assert await open_work(redis_client, "城管局") == []
    p = "sulai:{default}:v1"
    await assert_keys(
        {
            f"{p}:ticket:*": "none",
            f"{p}:idx:created": "none",
            f"{p}:idx:citizen:*": "none",
            f"{p}:idx:status:redispatched": "none",
            f"{p}:seq:*": "any",
            f"{p}:stats:day:*": "any",
        }
    )


async def test_ticket_created_assigned_in_one_write_is_open_work(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    ph = TICKET_ID_PLACEHOLDER
    tid = await store.create_ticket(
        "default",
        new(reply_deadline=DEADLINE),
        changes=[SetStatus(ph, S.ASSIGNED, "staff:1"), SetFields(ph, {"unit": "城管局"})],
    )
    assert await open_work(redis_client, "城管局") == [tid]
    assert await redis_client.zscore(keys.index_deadline("default"), tid) == DEADLINE


async def test_deadline_index_holds_open_tickets_only(
    store: CaseStore, redis_client: aioredis.Redis, assert_keys: KeyCheck
) -> None:
    idx = keys.index_deadline("default")
    with_deadline = await store.create_ticket("default", new(reply_deadline=DEADLINE))
    without = await store.create_ticket("default", new())
    assert await redis_client.zrange(idx, 0, -1, withscores=True) == [(with_deadline.encode(), DEADLINE)]
    await move(store, without, S.ACCEPTED, reply_deadline=DEADLINE + 5)  # a deadline set later
    await move(store, with_deadline, S.ASSIGNED, unit="城管局", reply_deadline=DEADLINE + 9)  # moved
    assert await redis_client.zrange(idx, 0, -1, withscores=True) == [
        (without.encode(), DEADLINE + 5),
        (with_deadline.encode(), DEADLINE + 9),
    ]
    await move(store, with_deadline, S.RESOLVED)
    await move(store, without, S.REJECTED)
    assert await redis_client.zcard(idx) == 0
    await move(store, with_deadline, S.ACCEPTED)  # reopened: overdue counting resumes
    assert await redis_client.zscore(idx, with_deadline) == DEADLINE + 9
    p = "sulai:{default}:v1"
    await assert_keys(
        {
            f"{p}:ticket:*": "none",
            f"{p}:idx:created": "none",
            f"{p}:idx:citizen:*": "none",
            f"{p}:idx:status:*": "none",
            f"{p}:idx:unit:城管局": "none",
            f"{p}:idx:deadline": "none",
            f"{p}:seq:*": "any",
            f"{p}:stats:day:*": "any",
        }
    )


async def test_counters_count_tickets_once_and_unit_resolutions_each(store: CaseStore) -> None:
    a = await store.create_ticket("default", new())
    await move(store, a, S.ASSIGNED, unit="城管局")
    await move(store, a, S.REPLIED)
    await move(store, a, S.RESOLVED)
    await move(store, a, S.REDISPATCHED, unit="")  # the citizen was not satisfied
    await move(store, a, S.ASSIGNED, unit="住建局")
    await move(store, a, S.REPLIED)
    await move(store, a, S.RESOLVED)
    b = await store.create_ticket("default", new())  # answered, not resolved
    await move(store, b, S.ASSIGNED, unit="城管局")
    await move(store, b, S.REPLIED)
    day = dt.date(2026, 11, 25)
    total = (await store.day_stats("default", day, day))["total"]
    assert (total["tickets_answered"], total["tickets_resolved"]) == (2, 1)
    assert total["resolved"] == 2  # the status counter still counts every resolution
    assert (total["resolved:城管局"], total["resolved:住建局"]) == (1, 1)
