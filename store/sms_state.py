"""Redis-backed SMS channel state: consent per number, inbound flood windows, send rate, and
monotonic delivery status.

Implements :class:`channels.sms.state.SmsState` with the key builders of ``store/keys.py``:

- opt-out: field ``opted_out`` in ``keys.address_state`` (TTL refreshed on every inbound, so an
  opt-out outlives any idle period of a number that keeps writing);
- inbound flood: a fixed-window counter ``keys.rate(…, "sms-in", address, window)``;
- send rate: GCRA (a token bucket stored as one "theoretical arrival time") in
  ``keys.rate_tat(…, "sms-send", number)``, computed in Lua on the server's clock so every
  process of the gateway draws from the same budget without a lock.
"""

from __future__ import annotations

import math

import redis.asyncio as aioredis

from channels.sms.state import Flood
from store import keys, mux

# GCRA: KEYS[1] = TAT key; ARGV = interval per segment (µs), burst tolerance (µs), cost (segments).
# Returns 0 when allowed (and the TAT advanced), else the wait in µs before it would be allowed.
# KEYS: the number's counter for this window, its address state. ARGV: counter TTL, state TTL.
# Counts one inbound text and keeps the number's state alive; returns the count in the window.
_INBOUND_HIT = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return n
"""

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""

# What store.outbox.Outbox.apply_delivery records as the reason when Twilio reports 21610.
OPT_OUT_UNREACHABLE = b"sms:21610"

# Twilio statuses in the order a message moves through them. A report never moves a message
# back: callbacks arrive out of order (PROTOCOLS.md B.4), and a late "sent" must not overwrite
# "delivered". Terminal outcomes share a rank, so the first one reported stays.
DELIVERY_RANK: dict[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "partially_delivered": 5,
    "read": 6,
}

# KEYS[1] = outbound record; ARGV = status, rank, error code. Returns 1 when applied.
_ADVANCE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'delivery_rank') or '0')
if tonumber(ARGV[2]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'delivery_status', ARGV[1], 'delivery_rank', ARGV[2], 'delivery_error', ARGV[3])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


class RedisSmsState:
    """The SMS channel's shared facts in Redis (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._gcra = redis.register_script(_GCRA)
        self._advance = redis.register_script(_ADVANCE)
        # Every inbound text passes here: a script on the shared connection (store/mux.py).
        self._inbound_hit = mux.register_script(redis, _INBOUND_HIT)

    async def is_opted_out(self, tenant: str, address: str) -> bool:
        value = await self.redis.hget(keys.address_state(tenant, address), "opted_out")
        return value == b"1"

    async def set_opted_out(self, tenant: str, address: str, opted_out: bool) -> None:
        """An opt-in also lifts an "unreachable" mark that a 21610 delivery report left: Twilio
        blocks an unsubscribed number only until it texts START."""
        key = keys.address_state(tenant, address)
        lift = not opted_out and (await self.redis.hget(key, "unreachable_why")) == OPT_OUT_UNREACHABLE
        async with self.redis.pipeline(transaction=True) as pipe:
            if opted_out:
                pipe.hset(key, "opted_out", "1")
            else:
                pipe.hdel(key, "opted_out")
            if lift:
                pipe.hdel(key, "unreachable", "unreachable_why")
            pipe.expire(key, keys.CONVERSATION_TTL)
            await pipe.execute()

    async def inbound_hit(self, tenant: str, address: str, limit: int, window_s: int, now: float) -> Flood:
        window = int(now // window_s)
        key = keys.rate(tenant, "sms-in", address, window)
        count = await self._inbound_hit(
            keys=[key, keys.address_state(tenant, address)], args=[window_s * 2, keys.CONVERSATION_TTL]
        )
        if count <= limit:
            return Flood.OK
        return Flood.WARN if count == limit + 1 else Flood.DROP

    async def acquire_send(self, tenant: str, number: str, segments: int, rate: float, burst: int) -> float:
        interval = int(1_000_000 / rate)
        # A message longer than the burst could never pass; it may use the whole burst instead.
        cost = max(1, min(segments, burst))
        wait_us = await self._gcra(
            keys=[keys.rate_tat(tenant, "sms-send", number)], args=[interval, interval * burst, cost]
        )
        return int(wait_us) / 1_000_000

    async def advance_delivery(
        self, tenant: str, outbound_id: str, status: str, error_code: str = ""
    ) -> bool:
        """Record a delivery status on the outbound record only if it moves the message forward."""
        rank = DELIVERY_RANK.get(status)
        if rank is None:
            return False
        applied = await self._advance(
            keys=[keys.outbound_record(tenant, outbound_id)],
            args=[status, rank, error_code, keys.SENT_MARK_TTL],
        )
        return bool(applied)


def retry_after_ceil(seconds: float) -> int:
    """Whole seconds for a Retry-After style hint."""
    return max(1, math.ceil(seconds))
