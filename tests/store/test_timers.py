"""Timers on the real Valkey: set, move, cancel, and claims that never fire a timer twice."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from store.timers import Timers

from .conftest import KeyCheck


async def test_set_move_cancel_claim(redis_client: aioredis.Redis, assert_keys: KeyCheck) -> None:
    timers = Timers(redis_client)
    await timers.set_timer("default", "remind:a", 100.0, b'{"k":"remind"}')
    await timers.set_timer("default", "expire:a", 200.0, b'{"k":"expire"}')
    await timers.set_timer("default", "remind:a", 150.0, b'{"k":"remind2"}')  # moved, not doubled
    assert await timers.next_due("default") == 150.0
    assert await timers.claim_due("default", now=149.0) == []
    (due,) = await timers.claim_due("default", now=150.0)
    assert (due.timer_id, due.payload) == ("remind:a", b'{"k":"remind2"}')
    assert await timers.cancel_timer("default", "expire:a")
    assert not await timers.cancel_timer("default", "expire:a")
    assert await timers.claim_due("default", now=10_000.0) == []
    await assert_keys({})  # nothing left: fired and cancelled timers leave no payload behind


async def test_two_claimers_never_fire_the_same_timer(redis_client: aioredis.Redis) -> None:
    timers = Timers(redis_client)
    for i in range(500):
        await timers.set_timer("default", f"t{i}", float(i), f"p{i}")
    fired: list[str] = []

    async def scheduler() -> None:
        while True:
            batch = await timers.claim_due("default", now=1000.0, limit=7)
            if not batch:
                return
            fired.extend(t.timer_id for t in batch)
            await asyncio.sleep(0)

    await asyncio.gather(scheduler(), scheduler(), scheduler())
    assert sorted(fired) == sorted(f"t{i}" for i in range(500))
    assert len(fired) == len(set(fired))
