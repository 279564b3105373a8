"""Redis implementation of the WeChat channel state (channels.wechat.state Protocols).

- Replay guard: ``keys.nonce`` STRING = body fingerprint, ``SET NX EX``.
- Shared access token: ``keys.access_token`` STRING with a TTL a little under its expiry, and
  ``keys.access_token_lock`` (``SET NX PX``) so only one process across the cluster fetches a new
  one; the others poll the token key until it appears (PROTOCOLS.md A.8, A.10).
- Per-address facts in the ``keys.address_state`` HASH, fields prefixed ``wx_`` so they sit beside
  other channels' fields: the 48-h window (``wx_last_in``, ``wx_used``), the short event window
  (``wx_event_at``, ``wx_event_used``), ``wx_unreachable``, ``wx_location`` (JSON) and
  ``wx_consent:<template id>`` ("long" or a count of one-time consents). TTL CONVERSATION_TTL,
  refreshed on every change. Multi-step updates are Lua scripts, so they are atomic.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import redis.asyncio as aioredis

from channels.base import Location
from channels.wechat.state import TokenFetch
from store import keys, mux

# A re-delivered older message must not reset the quota: only a newer CreateTime opens a window.
_NOTE_MESSAGE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'wx_last_in') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'wx_last_in', ARGV[1], 'wx_used', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: nonce, address state. ARGV: fingerprint, nonce ttl, "message"|"event", at, state ttl.
# first_use and note_message/note_event in one script: 0 (and nothing noted) on a replayed nonce.
_FIRST_USE_NOTING = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
end
local at_field, used_field = 'wx_last_in', 'wx_used'
if ARGV[3] == 'event' then at_field, used_field = 'wx_event_at', 'wx_event_used' end
local cur = tonumber(redis.call('HGET', KEYS[2], at_field) or '0')
if tonumber(ARGV[4]) > cur then
  redis.call('HSET', KEYS[2], at_field, ARGV[4], used_field, 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

_NOTE_EVENT = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'wx_event_at') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'wx_event_at', ARGV[1], 'wx_event_used', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# ARGV: now, window s, quota, event window s, event quota. Returns 1 when a message was claimed.
_CLAIM = """
local now = tonumber(ARGV[1])
local function take(at_field, used_field, span, quota)
  local at = tonumber(redis.call('HGET', KEYS[1], at_field) or '')
  local used = tonumber(redis.call('HGET', KEYS[1], used_field) or '0')
  if at and now - at < span and used < quota then
    redis.call('HINCRBY', KEYS[1], used_field, 1)
    return true
  end
  return false
end
if take('wx_last_in', 'wx_used', tonumber(ARGV[2]), tonumber(ARGV[3])) then return 1 end
if take('wx_event_at', 'wx_event_used', tonumber(ARGV[4]), tonumber(ARGV[5])) then return 1 end
return 0
"""

_ADD_CONSENT = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == 'long' then
  redis.call('HSET', KEYS[1], ARGV[1], 'long')
elseif v ~= 'long' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_TAKE_CONSENT = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v == 'long' then return 1 end
local n = tonumber(v or '0')
if n and n > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  return 1
end
return 0
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

TOKEN_LOCK_MS = 15_000  # longer than one token fetch may take; a dead holder's lock expires
TOKEN_WAIT_S = 20.0
TOKEN_MARGIN_S = 300  # stop using a token 5 min early: WeChat rotates stable tokens then


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWeChatState:
    """ReplayGuard, TokenCache and AddressBook on one Redis/Valkey connection."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._r = redis
        self._note_message = redis.register_script(_NOTE_MESSAGE)
        self._note_event = redis.register_script(_NOTE_EVENT)
        self._first_use_noting = mux.register_script(redis, _FIRST_USE_NOTING)
        self._claim = redis.register_script(_CLAIM)
        self._add_consent = redis.register_script(_ADD_CONSENT)
        self._take_consent = redis.register_script(_TAKE_CONSENT)
        self._release = redis.register_script(_RELEASE_LOCK)

    # --- ReplayGuard --------------------------------------------------------------------------------

    async def first_use(self, tenant: str, account: str, nonce: str, fingerprint: str, ttl: int) -> bool:
        key = keys.nonce(tenant, account, nonce)
        if await self._r.set(key, fingerprint, nx=True, ex=ttl):
            return True
        return _text(await self._r.get(key)) == fingerprint

    async def first_use_noting(
        self, tenant: str, account: str, nonce: str, fingerprint: str, ttl: int, note: tuple[str, str, float]
    ) -> bool:
        kind, address, at = note
        if kind not in ("message", "event"):
            raise ValueError(f"note kind must be message or event, got {kind!r}")
        keys_ = [keys.nonce(tenant, account, nonce), keys.address_state(tenant, address)]
        args: list[str | float] = [fingerprint, ttl, kind, at, keys.CONVERSATION_TTL]
        return bool(await self._first_use_noting(keys=keys_, args=args))

    # --- TokenCache ---------------------------------------------------------------------------------

    async def get(self, tenant: str, appid: str) -> str | None:
        return _text(await self._r.get(keys.access_token(tenant, appid)))

    async def refresh(self, tenant: str, appid: str, fetch: TokenFetch, stale: str | None) -> str:
        key, lock = keys.access_token(tenant, appid), keys.access_token_lock(tenant, appid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOKEN_WAIT_S
        while True:
            current = _text(await self._r.get(key))
            if current and current != stale:
                return current
            mine = secrets.token_hex(8)
            if await self._r.set(lock, mine, nx=True, px=TOKEN_LOCK_MS):
                try:
                    # Another process may have refreshed between our read and our lock.
                    current = _text(await self._r.get(key))
                    if current and current != stale:
                        return current
                    token, expires_in = await fetch()
                    await self._r.set(key, token, ex=max(expires_in - TOKEN_MARGIN_S, 30))
                    return token
                finally:
                    await self._release(keys=[lock], args=[mine])
            if loop.time() > deadline:
                raise TimeoutError(f"no access token for {appid}: the refreshing process did not finish")
            await asyncio.sleep(0.05)

    # --- AddressBook --------------------------------------------------------------------------------

    async def note_message(self, tenant: str, address: str, at: float) -> None:
        await self._note_message(keys=[keys.address_state(tenant, address)], args=[at, keys.CONVERSATION_TTL])

    async def note_event(self, tenant: str, address: str, at: float) -> None:
        await self._note_event(keys=[keys.address_state(tenant, address)], args=[at, keys.CONVERSATION_TTL])

    async def claim_custom(
        self, tenant: str, address: str, now: float, window: tuple[int, int], event_window: tuple[int, int]
    ) -> bool:
        args = [now, window[0], window[1], event_window[0], event_window[1]]
        return bool(await self._claim(keys=[keys.address_state(tenant, address)], args=args))

    async def close_window(self, tenant: str, address: str) -> None:
        # Mark both windows used up rather than deleting them: a re-delivery of the last message
        # must not reopen what WeChat closed.
        key = keys.address_state(tenant, address)
        await self._r.hset(key, mapping={"wx_used": 1 << 30, "wx_event_used": 1 << 30})
        await self._r.expire(key, keys.CONVERSATION_TTL)

    async def set_unreachable(self, tenant: str, address: str, reason: str) -> None:
        key = keys.address_state(tenant, address)
        await self._r.hset(key, "wx_unreachable", reason or "unreachable")
        await self._r.expire(key, keys.CONVERSATION_TTL)

    async def clear_unreachable(self, tenant: str, address: str) -> None:
        await self._r.hdel(keys.address_state(tenant, address), "wx_unreachable")

    async def unreachable(self, tenant: str, address: str) -> str:
        return _text(await self._r.hget(keys.address_state(tenant, address), "wx_unreachable")) or ""

    async def set_location(self, tenant: str, address: str, location: Location) -> None:
        key = keys.address_state(tenant, address)
        value = json.dumps([location.latitude, location.longitude, location.label], ensure_ascii=False)
        await self._r.hset(key, "wx_location", value)
        await self._r.expire(key, keys.CONVERSATION_TTL)

    async def last_location(self, tenant: str, address: str) -> Location | None:
        raw = _text(await self._r.hget(keys.address_state(tenant, address), "wx_location"))
        if not raw:
            return None
        lat, lng, label = json.loads(raw)
        return Location(float(lat), float(lng), str(label))

    async def add_consent(self, tenant: str, address: str, template_id: str, long_term: bool) -> None:
        args = [f"wx_consent:{template_id}", "long" if long_term else "once", keys.CONVERSATION_TTL]
        await self._add_consent(keys=[keys.address_state(tenant, address)], args=args)

    async def revoke_consent(self, tenant: str, address: str, template_id: str) -> None:
        await self._r.hdel(keys.address_state(tenant, address), f"wx_consent:{template_id}")

    async def take_consent(self, tenant: str, address: str, template_id: str) -> bool:
        key = keys.address_state(tenant, address)
        return bool(await self._take_consent(keys=[key], args=[f"wx_consent:{template_id}"]))
