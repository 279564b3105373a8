"""Store test helpers: a case store on the real Valkey fixture with a settable clock, and the
closing assertion over every key a test leaves behind and its TTL (STYLE.md lesson 8)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from store.casestore import CaseStore

# 2026-11-25 10:00 Asia/Shanghai
T0 = 1795572000.0

# What a key may be: "none" (no TTL), "any", or (low, high) seconds.
TtlRule = str | tuple[int, int]
KeyCheck = Callable[[Mapping[str, TtlRule]], Awaitable[None]]


@dataclass
class FakeTime:
    """An injected clock (no patching of globals)."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def store(redis_client: aioredis.Redis, clock: FakeTime) -> CaseStore:
    return CaseStore(redis_client, clock=clock)


@pytest.fixture
def assert_keys(redis_client: aioredis.Redis) -> KeyCheck:
    """``await assert_keys({pattern: rule})``: every key in the database matches exactly one
    pattern (fnmatch syntax, ``[`` escaped for the braces-free tenant names used in tests), every
    pattern matches at least one key, and each key's TTL satisfies the rule. SCAN is fine here:
    tests only."""

    async def check(expected: Mapping[str, TtlRule]) -> None:
        found = [k.decode() async for k in redis_client.scan_iter(count=1000)]
        unmatched_patterns = set(expected)
        for key in found:
            hits = [p for p in expected if fnmatch.fnmatchcase(key, p)]
            assert hits, f"unexpected key left behind: {key}"
            assert len(hits) == 1, f"key {key} matches several patterns: {hits}"
            unmatched_patterns.discard(hits[0])
            ttl = await redis_client.ttl(key)
            rule = expected[hits[0]]
            if rule == "none":
                assert ttl == -1, f"{key} should have no TTL, has {ttl}"
            elif isinstance(rule, tuple):
                assert rule[0] <= ttl <= rule[1], f"{key} TTL {ttl} not in {rule}"
            else:
                assert rule == "any", rule
        assert not unmatched_patterns, f"expected keys missing: {sorted(unmatched_patterns)}"

    return check


def key_pattern(key: str) -> str:
    """A concrete key as an fnmatch pattern (braces are literal; brackets escaped)."""
    return re.sub(r"([\[\]*?])", r"[\1]", key)
