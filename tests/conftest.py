"""Shared fixtures: a real, private Valkey server for the whole session, flushed per test.

The server is the same binary the embedded default uses (gateway.valkey_server). No fakeredis,
no mocks of our own modules.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.testing import ServeProcess, start_serve
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


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def factory(
        config: dict[str, object] | None = None,
        extra_args: tuple[str, ...] = (),
        data_dir: Path | None = None,
    ) -> ServeProcess:
        d = data_dir or tmp_path / "data"
        d.mkdir(exist_ok=True)
        proc = start_serve(d, config, extra_args)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                proc.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
        if proc.process.stdout is not None:
            proc.process.stdout.close()
