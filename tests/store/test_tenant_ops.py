"""Tenant-level ops of the one write script (Write.zsets / Write.lists): ZADD NX keeps the first
score, None removes, lists are capped and expire, and a refused write leaves them untouched."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from store import keys
from store.apply import Write, WriteConflict
from store.casestore import CaseStore

from .conftest import T0, KeyCheck, key_pattern

ADDR = "wechat:wxsandbox000000000:o_handoff"
QUEUE = keys.handoff_queue("default")
LOG = keys.handoff_log("default", ADDR)


def log_item(i: int) -> str:
    return json.dumps({"at": T0 + i, "text": f"第{i}条"}, ensure_ascii=False)


async def test_zadd_keeps_the_first_score_and_none_removes(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    await store.apply(Write(tenant="default", zsets=[(QUEUE, ADDR, T0)]))
    await store.apply(
        Write(tenant="default", zsets=[(QUEUE, ADDR, T0 + 600), (QUEUE, "tel:+8613800000000", T0 + 5)])
    )
    assert await redis_client.zrange(QUEUE, 0, -1, withscores=True) == [
        (ADDR.encode(), T0),
        (b"tel:+8613800000000", T0 + 5),
    ]
    await store.apply(Write(tenant="default", zsets=[(QUEUE, ADDR, None)]))
    assert await redis_client.zrange(QUEUE, 0, -1) == [b"tel:+8613800000000"]


async def test_list_is_capped_and_expires(
    store: CaseStore, redis_client: aioredis.Redis, assert_keys: KeyCheck
) -> None:
    for i in range(7):
        await store.apply(Write(tenant="default", lists=[(LOG, log_item(i), 5, keys.CONVERSATION_TTL)]))
    kept = [json.loads(x)["text"] for x in await redis_client.lrange(LOG, 0, -1)]
    assert kept == ["第2条", "第3条", "第4条", "第5条", "第6条"]
    await store.apply(Write(tenant="default", zsets=[(QUEUE, ADDR, T0)]))
    ttl = keys.CONVERSATION_TTL
    await assert_keys({key_pattern(LOG): (ttl - 5, ttl), key_pattern(QUEUE): "none"})


async def test_a_refused_write_leaves_queue_and_log_alone(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    conv = (ADDR, 0, b'{"mode": "idle"}')
    await store.apply(Write(tenant="default", conversation=conv))
    stale = Write(
        tenant="default",
        conversation=conv,  # expects version 0, the store is at 1
        zsets=[(QUEUE, ADDR, T0)],
        lists=[(LOG, log_item(0), 5, keys.CONVERSATION_TTL)],
    )
    with pytest.raises(WriteConflict):
        await store.apply(stale)
    assert await redis_client.exists(QUEUE, LOG) == 0
