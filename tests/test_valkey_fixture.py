"""The test server answers and is flushed between tests."""

import redis.asyncio as aioredis


async def test_server_answers_and_starts_empty(redis_client: aioredis.Redis) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set(b"k", b"v")
    assert await redis_client.get(b"k") == b"v"
