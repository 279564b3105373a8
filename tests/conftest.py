"""Shared fixtures: a real, private Valkey server for the whole session, flushed per test.

The server is the same binary the embedded default uses (gateway.valkey_server). No fakeredis,
no mocks of our own modules.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.valkey_server import EmbeddedValkey


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sulai-valkey-") as d:
        server = EmbeddedValkey(Path(d), appendonly=False)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@pytest.fixture
async def redis_client(valkey_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(valkey_url, decode_responses=False)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
