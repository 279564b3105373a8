"""The store extensions the staff API writes with: queue ops (QueueAdd/QueueRemove), the optimistic
ticket guard (Write.guards → StaleTicket), day counters in a staff write, and the new ticket fields
round-tripping through the one hash codec."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from store import keys
from store.apply import StaleTicket, TicketNotFound, Write
from store.casestore import CaseStore
from store.model import (
    AddEvent,
    CountDay,
    NewTicket,
    QueueAdd,
    QueueRemove,
    SetFields,
    TicketEvent,
    ticket_from_hash,
    ticket_to_hash,
)

T0 = 1795572000.0  # 2026-11-25 10:00 Asia/Shanghai


@pytest.fixture
def store(redis_client: aioredis.Redis) -> CaseStore:
    return CaseStore(redis_client, clock=lambda: T0)


async def _ticket(store: CaseStore) -> str:
    new = NewTicket(channel="sms", citizen="tel:+8613812345678", description="路灯坏了")
    return await store.create_ticket("default", new)


async def test_queue_ops_and_counter(store: CaseStore, redis_client: aioredis.Redis) -> None:
    tid = await _ticket(store)
    await store.apply(
        Write(
            tenant="default",
            changes=[
                QueueAdd(tid, "callbacks", 7.0),
                QueueAdd(tid, "entered_by", 8.0, owner="st1"),
                CountDay("rated:城管局", 2),
            ],
        )
    )
    assert await redis_client.zscore(keys.callback_list("default"), tid) == 7.0
    assert await redis_client.zscore(keys.index_entered_by("default", "st1"), tid) == 8.0
    day = await redis_client.hget(keys.counters_day("default", "20261125"), "rated:城管局")
    assert day == b"2"
    await store.apply(Write(tenant="default", changes=[QueueRemove(tid, "callbacks")]))
    assert await redis_client.zscore(keys.callback_list("default"), tid) is None
    with pytest.raises(ValueError):
        await store.apply(Write(tenant="default", changes=[QueueAdd(tid, "entered_by", 1.0)]))  # no owner
    with pytest.raises(TicketNotFound):
        await store.apply(Write(tenant="default", changes=[QueueAdd("SN-261125-9999-1", "supervision", 1.0)]))
    assert await redis_client.zcard(keys.supervision_queue("default")) == 0


async def test_queue_add_on_a_new_ticket_uses_its_drawn_id(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    from store.apply import TICKET_ID_PLACEHOLDER

    new = NewTicket(channel="offline", citizen="staff:st9", description="来信")
    tid = await store.create_ticket(
        "default", new, changes=[QueueAdd(TICKET_ID_PLACEHOLDER, "entered_by", T0, owner="st9")]
    )
    assert await redis_client.zrange(keys.index_entered_by("default", "st9"), 0, -1) == [tid.encode()]


async def test_guard_refuses_a_write_decided_on_stale_data(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    tid = await _ticket(store)
    raw = await redis_client.hget(keys.ticket("default", tid), "updated_at")
    assert isinstance(raw, bytes)
    seen = (raw.decode(), 1)  # one "created" event
    note = AddEvent(tid, TicketEvent("note", "staff:a", T0, {"text": "x"}))
    await store.apply(Write(tenant="default", changes=[note]))  # someone else's note: no field moves
    before = await redis_client.llen(keys.ticket_events("default", tid))
    with pytest.raises(StaleTicket) as err:
        await store.apply(
            Write(tenant="default", changes=[SetFields(tid, {"unit": "城管局"})], guards={tid: seen})
        )
    assert err.value.ticket_id == tid
    assert await redis_client.llen(keys.ticket_events("default", tid)) == before
    assert await redis_client.hget(keys.ticket("default", tid), "unit") in (None, b"")
    fresh = (raw.decode(), before)
    await store.apply(
        Write(tenant="default", changes=[SetFields(tid, {"unit": "城管局"})], guards={tid: fresh})
    )
    assert await redis_client.hget(keys.ticket("default", tid), "unit") == "城管局".encode()


async def test_new_ticket_fields_round_trip(store: CaseStore) -> None:
    tid = await _ticket(store)
    values = {
        "resolution": "已修复",
        "reject_reason": "",
        "rating_comment": "很快",
        "rating_state": "rated",
        "merged_into": "SN-261125-0002-9",
    }
    await store.apply(Write(tenant="default", changes=[SetFields(tid, values)]))
    ticket = await store.get_ticket("default", tid)
    assert ticket is not None
    assert (ticket.resolution, ticket.rating_comment, ticket.rating_state, ticket.merged_into) == (
        "已修复",
        "很快",
        "rated",
        "SN-261125-0002-9",
    )
    assert ticket_from_hash(ticket_to_hash(ticket)) == ticket
