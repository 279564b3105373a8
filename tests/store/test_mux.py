"""The multiplexed script connection (store/mux.py) on the real Valkey: replies reach their own
callers under concurrency, a cancelled caller does not shift the others' replies, script errors
and a flushed script cache, a killed connection, and the redis-py fallback when none is attached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, ResponseError

from store import mux

ECHO = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


@pytest.fixture
async def attached(redis_client: aioredis.Redis) -> AsyncIterator[mux.Mux]:
    m = mux.attach(redis_client)
    assert m is not None
    try:
        yield m
    finally:
        await mux.detach(redis_client)


async def test_each_caller_gets_its_own_reply(redis_client: aioredis.Redis, attached: mux.Mux) -> None:
    script = mux.register_script(redis_client, ECHO)
    assert isinstance(script, mux.MuxScript)
    replies = await asyncio.gather(*(script(keys=[f"k{i % 7}"], args=[f"v{i}"]) for i in range(300)))
    for i, (key, arg, _) in enumerate(replies):
        assert (key, arg) == (f"k{i % 7}".encode(), f"v{i}".encode())
    # Every INCR happened once: the counters add up to the number of calls.
    counts = await redis_client.mget([f"k{i}" for i in range(7)])
    assert sum(int(c or 0) for c in counts) == 300


async def test_a_cancelled_call_does_not_shift_the_replies(
    redis_client: aioredis.Redis, attached: mux.Mux
) -> None:
    script = mux.register_script(redis_client, ECHO)
    first = asyncio.ensure_future(script(keys=["a"], args=["first"]))
    await asyncio.sleep(0)  # the command is queued for this loop iteration's write
    first.cancel()
    second = await script(keys=["b"], args=["second"])
    assert second[:2] == [b"b", b"second"]
    assert first.cancelled()


async def test_errors_and_a_flushed_script_cache(redis_client: aioredis.Redis, attached: mux.Mux) -> None:
    failing = mux.register_script(redis_client, "return redis.call('INCR', KEYS[1])")
    await redis_client.set("text", "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await failing(keys=["text"])
    script = mux.register_script(redis_client, ECHO)
    assert (await script(keys=["c"], args=["x"]))[2] == 1
    await redis_client.script_flush()
    assert (await script(keys=["c"], args=["y"]))[2] == 2  # loaded again after NOSCRIPT


async def test_a_lost_connection_fails_fast_and_the_next_call_reconnects(
    redis_client: aioredis.Redis, attached: mux.Mux
) -> None:
    script = mux.register_script(redis_client, ECHO)
    await script(keys=["d"], args=["1"])
    client_id = await attached.execute("CLIENT", "ID")
    await redis_client.client_kill_filter(_id=client_id)
    for _ in range(100):
        if attached._transport is None:
            break
        await asyncio.sleep(0.01)
    assert attached._transport is None
    assert (await script(keys=["d"], args=["2"]))[2] == 2
    assert await attached.execute("CLIENT", "ID") != client_id


async def test_pending_calls_fail_with_connection_error_when_closed(
    redis_client: aioredis.Redis, attached: mux.Mux
) -> None:
    script = mux.register_script(redis_client, ECHO)
    await script(keys=["e"], args=["1"])
    pending = asyncio.ensure_future(script(keys=["e"], args=["2"]))
    await asyncio.sleep(0)
    await attached.aclose()
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await script(keys=["e"], args=["3"])


async def test_without_attach_scripts_are_redis_py_scripts(redis_client: aioredis.Redis) -> None:
    script = mux.register_script(redis_client, ECHO)
    assert isinstance(script, AsyncScript)
    assert (await script(keys=["f"], args=["x"]))[:2] == [b"f", b"x"]
