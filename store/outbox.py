"""The outbox: a per-tenant stream with consumer group ``dispatch``, its delayed ZSET, the
dead-letter stream and the per-outbound delivery record (DESIGN.md "The outbox").

Entries are added by the atomic writes of :mod:`store.apply`; this module holds the dispatcher's
side. Every state change of an entry is one Lua script that also XACKs and XDELs the stream entry,
so an entry is never both acknowledged and lost, and the stream stays short (acknowledged entries
are deleted: that is the trimming).

Record statuses are ordered queued < sending < sent < delivered < read; failed/undelivered are
final. Delivery reports only ever move a record forward, so a late ``sent`` never overwrites
``delivered``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from channels.base import DeliveryUpdate, Outbound
from store import keys
from store.outbox_codec import Envelope

GROUP = "dispatch"
DEAD_MAXLEN = 10_000
SENT_STATUSES = ("sent", "delivered", "read")

# Ranks shared by the scripts below (delivery reports and the dispatcher's own marks).
_RANK = "local RANK = {queued=1, sending=2, retrying=2, sent=3, delivered=4, read=5, failed=6, undelivered=6, dead=6}\n"

# KEYS: record. ARGV: now, ttl. -> current status when already sent, else marks sending.
_BEGIN = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'sent' or st == 'delivered' or st == 'read' then return st end
redis.call('HSET', KEYS[1], 'status', 'sending', 'updated_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return ''
"""

# KEYS: record, provider map, stream. ARGV: entry id, status, provider id, path, recipient,
# channel, outbound id, now, ttl, ticket id, envelope (kept so a later permanent delivery
# failure can re-address the message).
_FINISH = (
    _RANK
    + """
local cur = redis.call('HGET', KEYS[1], 'status') or 'queued'
local st = ARGV[2]
if (RANK[st] or 3) <= (RANK[cur] or 0) then st = cur end
redis.call('HSET', KEYS[1], 'status', st, 'provider_id', ARGV[3], 'path', ARGV[4], 'recipient', ARGV[5],
  'channel', ARGV[6], 'sent_at', ARGV[8], 'updated_at', ARGV[8], 'ticket_id', ARGV[10], 'error', '',
  'envelope', ARGV[11])
redis.call('EXPIRE', KEYS[1], ARGV[9])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[7], 'EX', ARGV[9]) end
redis.call('XACK', KEYS[3], 'dispatch', ARGV[1])
redis.call('XDEL', KEYS[3], ARGV[1])
return st
"""
)

# Move an entry out of the stream: to the delayed ZSET (ARGV[3] = due) or the dead letters.
# KEYS: record, stream, delayed, dead. ARGV: entry id, envelope, due, status, error, now, ttl, route.
_MOVE = """
if ARGV[4] == 'dead' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', 'o', ARGV[2], 'why', ARGV[5], 'at', ARGV[6])
elseif ARGV[4] == 'reroute' then
  redis.call('XADD', KEYS[2], '*', 'o', ARGV[2])
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
end
local st = ARGV[4] == 'reroute' and 'queued' or ARGV[4]
redis.call('HSET', KEYS[1], 'status', st, 'error', ARGV[5], 'updated_at', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'route', ARGV[8]) end
redis.call('EXPIRE', KEYS[1], ARGV[7])
if ARGV[1] ~= '' then
  redis.call('XACK', KEYS[2], 'dispatch', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: delayed, stream. ARGV: now, limit. Due members back into the stream.
_PROMOTE = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'o', m)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"""

# KEYS: provider map, (record prefix unused). ARGV: status, error, now, ttl, record key prefix.
_DELIVERY = (
    _RANK
    + """
local oid = redis.call('GET', KEYS[1])
if not oid then return {'', '', ''} end
local rec = ARGV[5] .. oid
local cur = redis.call('HGET', rec, 'status') or 'queued'
local applied = '0'
if (RANK[ARGV[1]] or 0) > (RANK[cur] or 0) then
  redis.call('HSET', rec, 'status', ARGV[1], 'delivery_error', ARGV[2], 'updated_at', ARGV[3])
  redis.call('EXPIRE', rec, ARGV[4])
  applied = '1'
end
return {oid, redis.call('HGET', rec, 'recipient') or '', applied}
"""
)


@dataclass(frozen=True, slots=True)
class StreamEntry:
    entry_id: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str
    envelope: Envelope
    why: str
    at: float


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _entries(rows: Any) -> list[StreamEntry]:
    out = []
    for entry_id, fields in rows:
        if fields and b"o" in fields:  # a deleted entry still pending shows up with no fields
            out.append(StreamEntry(_s(entry_id), Envelope.from_json(fields[b"o"])))
    return out


class Outbox:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._move = redis.register_script(_MOVE)
        self._promote = redis.register_script(_PROMOTE)
        self._delivery = redis.register_script(_DELIVERY)

    async def ensure_group(self, tenant: str) -> None:
        try:
            await self.redis.xgroup_create(keys.outbox(tenant), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, tenant: str, outbounds: Sequence[Outbound]) -> None:
        """Add messages outside any other change (staff retry, tests). Changes that cause
        messages should pass them to the store's atomic write instead."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for ob in outbounds:
                pipe.xadd(keys.outbox(tenant), {"o": Envelope(ob).to_json()})
            await pipe.execute()

    async def read(self, tenant: str, consumer: str, count: int, block_ms: int | None) -> list[StreamEntry]:
        res: Any = await self.redis.xreadgroup(
            GROUP, consumer, {keys.outbox(tenant): ">"}, count=count, block=block_ms
        )
        return _entries(res[0][1]) if res else []

    async def reclaim(self, tenant: str, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Entries a dead dispatcher read but never acknowledged (XAUTOCLAIM)."""
        res: Any = await self.redis.xautoclaim(
            keys.outbox(tenant), GROUP, consumer, min_idle_ms, "0-0", count=count
        )
        for deleted in res[2] if len(res) > 2 else ():
            await self.redis.xack(keys.outbox(tenant), GROUP, deleted)
        return _entries(res[1])

    async def promote_due(self, tenant: str, now: float, limit: int = 100) -> int:
        return int(
            await self._promote(
                keys=[keys.outbox_delayed(tenant), keys.outbox(tenant)], args=[repr(now), limit]
            )
        )

    async def begin(self, tenant: str, outbound_id: str, now: float) -> str | None:
        """Mark an attempt; returns the status when the outbound was already sent (skip it)."""
        st = await self._begin(
            keys=[keys.outbound_record(tenant, outbound_id)], args=[repr(now), keys.SENT_MARK_TTL]
        )
        return _s(st) or None

    async def finish(
        self,
        tenant: str,
        entry: StreamEntry,
        *,
        channel: str,
        provider_id: str,
        status: str,
        path: str,
        now: float,
    ) -> str:
        ob = entry.envelope.outbound
        st = await self._finish(
            keys=[
                keys.outbound_record(tenant, ob.id),
                keys.provider_message(tenant, channel, provider_id or "-"),
                keys.outbox(tenant),
            ],
            args=[
                entry.entry_id,
                status,
                provider_id,
                path,
                ob.recipient,
                channel,
                ob.id,
                repr(now),
                keys.SENT_MARK_TTL,
                ob.ticket_id or "",
                entry.envelope.to_json(),
            ],
        )
        return _s(st)

    async def sent_envelope(self, tenant: str, outbound_id: str) -> Envelope | None:
        """The envelope as it was last sent (None for records written before it was kept)."""
        raw = await self.redis.hget(keys.outbound_record(tenant, outbound_id), "envelope")
        return Envelope.from_json(raw) if raw else None

    async def move(
        self,
        tenant: str,
        entry_id: str,
        env: Envelope,
        *,
        to: str,
        why: str,
        now: float,
        due: float = 0.0,
        route: str = "",
    ) -> None:
        """``to``: "retrying" (delayed ZSET at ``due``), "dead", or "reroute" (back to the stream)."""
        await self._move(
            keys=[
                keys.outbound_record(tenant, env.outbound.id),
                keys.outbox(tenant),
                keys.outbox_delayed(tenant),
                keys.outbox_dead(tenant),
            ],
            args=[entry_id, env.to_json(), repr(due), to, why, repr(now), keys.SENT_MARK_TTL, route],
        )

    async def ack(self, tenant: str, entry_id: str) -> None:
        """Acknowledge and delete an entry that needs nothing more (already sent)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(keys.outbox(tenant), GROUP, entry_id)
            pipe.xdel(keys.outbox(tenant), entry_id)
            await pipe.execute()

    async def record(self, tenant: str, outbound_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.outbound_record(tenant, outbound_id))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def dead_letters(
        self, tenant: str, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[DeadLetter], str | None]:
        """Newest first; ``cursor`` is the previous page's last entry id."""
        high = f"({cursor}" if cursor else "+"
        rows: Any = await self.redis.xrevrange(keys.outbox_dead(tenant), high, "-", count=limit + 1)
        out = [
            DeadLetter(_s(i), Envelope.from_json(f[b"o"]), _s(f.get(b"why", b"")), float(f.get(b"at", b"0")))
            for i, f in rows[:limit]
        ]
        return out, (out[-1].entry_id if len(rows) > limit else None)

    async def retry_dead(self, tenant: str, entry_id: str) -> bool:
        """Staff retry: the entry goes back to the stream with its attempt count reset."""
        rows: Any = await self.redis.xrange(keys.outbox_dead(tenant), entry_id, entry_id)
        if not rows:
            return False
        env = Envelope.from_json(rows[0][1][b"o"])
        fresh = Envelope(env.outbound, attempts=0, tried=(), why=f"retried after: {env.why}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.outbox(tenant), {"o": fresh.to_json()})
            pipe.xdel(keys.outbox_dead(tenant), entry_id)
            pipe.hset(
                keys.outbound_record(tenant, env.outbound.id), mapping={"status": "queued", "attempts": 0}
            )
            await pipe.execute()
        return True

    async def apply_delivery(
        self, tenant: str, channel: str, update: DeliveryUpdate, now: float | None = None
    ) -> str | None:
        """Apply a provider's delivery report; returns the outbound id it concerned (None when
        unknown). Monotonic. A permanent failure marks the address unreachable, so later pushes
        take another of the citizen's addresses."""
        return (await self.apply_delivery_report(tenant, channel, update, now))[0]

    async def apply_delivery_report(
        self, tenant: str, channel: str, update: DeliveryUpdate, now: float | None = None
    ) -> tuple[str | None, bool]:
        """As :meth:`apply_delivery`, plus whether the report moved the record (a repeated or
        late report does not; the dispatcher re-addresses a message only once)."""
        now = time.time() if now is None else now
        prefix = keys.outbound_record(tenant, "")
        oid, recipient, applied = await self._delivery(
            keys=[keys.provider_message(tenant, channel, update.provider_id)],
            args=[update.status, update.error_code, repr(now), keys.SENT_MARK_TTL, prefix],
        )
        address = update.address or _s(recipient)
        if update.permanent_failure and address:
            await self.mark_unreachable(tenant, address, f"{channel}:{update.error_code or update.status}")
        return (_s(oid) or None), _s(applied) == "1"

    async def mark_unreachable(self, tenant: str, address: str, why: str) -> None:
        key = keys.address_state(tenant, address)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"unreachable": "1", "unreachable_why": why})
            pipe.expire(key, keys.CONVERSATION_TTL)
            await pipe.execute()
