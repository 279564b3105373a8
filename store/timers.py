"""Timers: draft reminders, survey expiry, SLA deadlines (DESIGN.md "Timers").

A per-tenant ZSET (timer id -> due time) plus a payload HASH. Timers are usually set and
cancelled inside the atomic write of the change that causes them (:class:`store.apply.Write`);
the functions here serve the scheduler and direct use. ``claim_due`` removes due timers and
returns their payloads in one Lua call, so of two schedulers racing for the same timer exactly
one gets it. Setting a timer id again moves it (the id is the dedupe key: "remind:<address>").
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from store import keys

_CLAIM = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
  redis.call('HDEL', KEYS[2], id)
end
return out
"""


@dataclass(frozen=True, slots=True)
class DueTimer:
    timer_id: str
    payload: bytes


class Timers:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)

    async def set_timer(self, tenant: str, timer_id: str, due: float, payload: bytes | str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.timers(tenant), {timer_id: due})
            pipe.hset(keys.timer_payload(tenant), timer_id, payload)
            await pipe.execute()

    async def cancel_timer(self, tenant: str, timer_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.timers(tenant), timer_id)
            pipe.hdel(keys.timer_payload(tenant), timer_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def claim_due(self, tenant: str, now: float, limit: int = 100) -> list[DueTimer]:
        """Remove and return up to ``limit`` timers due at ``now``, earliest first. A claimed
        timer is gone: the caller fires it (at most once; a crash in between loses it, which for
        reminders and sweeps is the lesser evil than firing twice)."""
        raw = await self._claim(
            keys=[keys.timers(tenant), keys.timer_payload(tenant)], args=[repr(now), limit]
        )
        return [
            DueTimer(raw[i].decode() if isinstance(raw[i], bytes) else str(raw[i]), _b(raw[i + 1]))
            for i in range(0, len(raw), 2)
        ]

    async def next_due(self, tenant: str) -> float | None:
        rows = await self.redis.zrange(keys.timers(tenant), 0, 0, withscores=True)
        return float(rows[0][1]) if rows else None


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
