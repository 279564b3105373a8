"""The outbox dispatcher: reads outbound entries, sends them through the channel adapters,
records what happened, retries what may be retried, and moves the rest to the dead letters.

The retry policy lives here and only here (STYLE.md 12), driven by the adapters' closed set of
:class:`~channels.base.SendErrorCode`:

- retryable (temporary, rate-limited): back to the delayed ZSET with exponential backoff,
  jittered and capped (or the provider's ``retry_after`` when longer); after ``max_attempts``
  to the dead-letter stream;
- ``try_other_address`` (window closed, opted out, unreachable): re-addressed to another address
  of the citizen (keys.citizen_addresses) not yet tried, with the path and the reason recorded in
  the outbound record; with none left, dead-lettered as "undeliverable";
- anything else: dead-lettered at once.

Exactly-once, honestly: an outbound id whose record says sent is never sent again, and the
"sent" mark and the XACK are one script run right after the adapter returns. Cancelling the
dispatcher (shutdown) lets the entry in hand finish, so a graceful stop never duplicates. The
remaining window is a hard crash of the process between the provider accepting a message and
that script (one Redis round trip): the entry stays pending, is reclaimed with XAUTOCLAIM and
sent a second time. We prefer that duplicate to the alternative of losing a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from channels.base import (
    AddressError,
    ChannelAdapter,
    DeliveryUpdate,
    Outbound,
    RenderedMessage,
    SendError,
    SendErrorCode,
    address_channel,
)
from gateway import metrics
from store import keys
from store.outbox import GROUP, Outbox, StreamEntry
from store.outbox_codec import Envelope

log = logging.getLogger(__name__)

Render = Callable[[Outbound, str], RenderedMessage]
# Which channel to try first when falling back; earlier is preferred.
FALLBACK_ORDER = ("wechat", "sms", "email")
OBSERVE_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    max_attempts: int = 6
    backoff_base: float = 2.0  # seconds before the first retry
    backoff_cap: float = 900.0
    jitter: float = 0.2  # ± fraction of the delay
    batch: int = 50
    block_ms: int = 1000
    claim_idle_ms: int = 60_000  # an entry pending this long belongs to a dead dispatcher
    consumer: str = ""  # default: host-pid


def backoff_delay(
    attempt: int, settings: DispatchSettings, rng: random.Random, retry_after: float = 0.0
) -> float:
    """Delay before retry number ``attempt`` (1 = first retry)."""
    base = min(settings.backoff_cap, settings.backoff_base * 2 ** (attempt - 1))
    jittered = base * (1 + rng.uniform(-settings.jitter, settings.jitter))
    return float(max(retry_after, min(settings.backoff_cap, jittered)))


class Dispatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        tenants: Sequence[str],
        adapters: Mapping[str, ChannelAdapter],
        render: Render,
        settings: DispatchSettings | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.tenants = list(tenants)
        self.adapters = dict(adapters)
        self.render = render
        self.settings = settings or DispatchSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.outbox = Outbox(redis)
        self.consumer = self.settings.consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._ready: set[str] = set()

    async def _group(self, tenant: str) -> None:
        if tenant not in self._ready:
            await self.outbox.ensure_group(tenant)
            self._ready.add(tenant)

    async def dispatch_once(self, block_ms: int | None = None) -> int:
        """One pass over every tenant: promote due delayed entries, reclaim entries of dead
        dispatchers, read new ones, and process them. Returns how many entries were handled."""
        handled = 0
        for tenant in self.tenants:
            await self._group(tenant)
            await self.outbox.promote_due(tenant, self.clock())
            entries = await self.outbox.reclaim(
                tenant, self.consumer, self.settings.claim_idle_ms, self.settings.batch
            )
            entries += await self.outbox.read(tenant, self.consumer, self.settings.batch, block_ms)
            for entry in entries:
                # Shielded: a cancellation (shutdown) lets the entry in hand finish its
                # send-and-mark, and stops before the next one; the rest stay pending.
                task = asyncio.ensure_future(self._process(tenant, entry))
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    await task
                    raise
                handled += 1
        return handled

    async def observe(self) -> None:
        """Outbox depth (entries not yet acknowledged, plus parked retries and quiet-hour pushes)
        and the age of the oldest pending entry, for /metrics."""
        now = self.clock()
        for tenant in self.tenants:
            stream = keys.outbox(tenant)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xpending(stream, GROUP)
                pipe.xinfo_groups(stream)
                pipe.zcard(keys.outbox_delayed(tenant))
                pending, groups, delayed = await pipe.execute()
            lag = next((int(g.get("lag") or 0) for g in groups if _text(g.get("name")) == GROUP), 0)
            depth = int(pending.get("pending") or 0) + lag + int(delayed)
            metrics.outbox_depth.labels(tenant).set(depth)
            oldest = _text(pending.get("min") or "")
            age = now - int(oldest.split("-")[0]) / 1000 if oldest else 0.0
            metrics.outbox_oldest_age.labels(tenant).set(max(age, 0.0))

    async def run(self, stop: asyncio.Event) -> None:
        observed = 0.0
        while not stop.is_set():
            if time.monotonic() - observed > OBSERVE_EVERY_S:
                observed = time.monotonic()
                with contextlib.suppress(aioredis.RedisError, OSError):
                    await self.observe()
            try:
                handled = await self.dispatch_once(
                    block_ms=self.settings.block_ms if len(self.tenants) == 1 else None
                )
                if not handled and len(self.tenants) != 1:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.block_ms / 1000)
            except (ConnectionError, OSError, aioredis.RedisError):
                log.exception("dispatcher pass failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _process(self, tenant: str, entry: StreamEntry) -> None:
        env, now = entry.envelope, self.clock()
        ob = env.outbound
        if ob.not_before > now:  # quiet hours: park until then
            await self.outbox.move(
                tenant, entry.entry_id, env, to="queued", why="", now=now, due=ob.not_before
            )
            return
        already = await self.outbox.begin(tenant, ob.id, now)
        if already:
            log.info("outbound already %s; not sending again", already, extra={"outbound": ob.id})
            await self.outbox.finish(
                tenant, entry, channel="", provider_id="", status=already, path="", now=now
            )
            return
        try:
            channel = address_channel(ob.recipient)
        except AddressError:
            channel = "none"
        adapter = self.adapters.get(channel)
        if adapter is None:
            await self._dead(tenant, entry, env, f"no adapter for channel {channel}")
            return
        try:
            if await self._address_flag(tenant, ob.recipient, "unreachable"):
                raise SendError(SendErrorCode.UNREACHABLE, "address marked unreachable")
            result = await adapter.send(ob, self.render(ob, channel))
        except SendError as exc:
            metrics.send_failures.labels(channel, str(exc.code)).inc()
            metrics.sends.labels(channel, "failed").inc()
            await self._failed(tenant, entry, env, exc)
            return
        metrics.sends.labels(channel, "sent").inc()
        await self.outbox.finish(
            tenant,
            entry,
            channel=channel,
            provider_id=result.provider_id,
            status=result.status,
            path=result.path,
            now=self.clock(),
        )

    async def _failed(self, tenant: str, entry: StreamEntry, env: Envelope, exc: SendError) -> None:
        why = f"{exc.code}: {exc.message or exc.provider_code}".strip()
        attempts = env.attempts + 1
        if exc.code.retryable:
            if attempts >= self.settings.max_attempts:
                await self._dead(tenant, entry, env.retried(why), f"gave up after {attempts} attempts: {why}")
                return
            delay = backoff_delay(attempts, self.settings, self.rng, exc.retry_after)
            now = self.clock()
            await self.outbox.move(
                tenant, entry.entry_id, env.retried(why), to="retrying", why=why, now=now, due=now + delay
            )
            return
        if exc.code == SendErrorCode.UNREACHABLE:
            await self.outbox.mark_unreachable(tenant, env.outbound.recipient, why)
        if exc.code.try_other_address:
            other = await self._other_address(tenant, env)
            if other is not None:
                tried = (*env.tried, env.outbound.recipient)
                moved = Envelope(replace(env.outbound, recipient=other), env.attempts, tried, why)
                route = " -> ".join([*(f"{a}" for a in tried), other]) + f" ({why})"
                await self.outbox.move(
                    tenant, entry.entry_id, moved, to="reroute", why=why, now=self.clock(), route=route
                )
                return
            await self._dead(tenant, entry, env.retried(why), f"undeliverable: {why}")
            return
        await self._dead(tenant, entry, env.retried(why), why)

    async def _dead(self, tenant: str, entry: StreamEntry, env: Envelope, why: str) -> None:
        log.warning("outbound dead-lettered: %s", why, extra={"outbound": env.outbound.id})
        await self.outbox.move(tenant, entry.entry_id, env, to="dead", why=why, now=self.clock())

    async def _address_flag(self, tenant: str, address: str, name: str) -> bool:
        return bool(await self.redis.hget(keys.address_state(tenant, address), name))

    async def _other_address(self, tenant: str, env: Envelope) -> str | None:
        """Another address of the citizen that has an adapter, was not tried, and is not known
        to be unreachable."""
        tried = {*env.tried, env.outbound.recipient}
        members = await self.redis.smembers(keys.citizen_addresses(tenant, env.outbound.recipient))
        candidates = []
        for raw in members:
            addr = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                channel = address_channel(addr)
            except AddressError:
                continue
            if addr in tried or channel not in self.adapters:
                continue
            if await self._address_flag(tenant, addr, "unreachable"):
                continue
            rank = FALLBACK_ORDER.index(channel) if channel in FALLBACK_ORDER else len(FALLBACK_ORDER)
            candidates.append((rank, addr))
        return min(candidates)[1] if candidates else None

    # --- staff API and delivery reports -------------------------------------------------------

    async def apply_delivery(self, tenant: str, channel: str, update: DeliveryUpdate) -> str | None:
        """Record a delivery report. A permanent failure (Twilio ``undelivered``/``failed`` with a
        permanent code, an email bounce) sends the message again to another address of the
        citizen, with the route recorded, like a permanent error at send time."""
        oid, applied = await self.outbox.apply_delivery_report(tenant, channel, update, self.clock())
        if oid and applied and update.permanent_failure:
            await self._reroute_undelivered(tenant, channel, oid, update)
        return oid

    async def _reroute_undelivered(
        self, tenant: str, channel: str, outbound_id: str, update: DeliveryUpdate
    ) -> None:
        env = await self.outbox.sent_envelope(tenant, outbound_id)
        if env is None:
            return
        why = f"{channel} {update.status}: {update.error_code or 'permanent'}"
        other = await self._other_address(tenant, env)
        if other is None:
            log.info("undelivered and no other address", extra={"outbound": outbound_id})
            return
        tried = (*env.tried, env.outbound.recipient)
        moved = Envelope(replace(env.outbound, recipient=other), env.attempts, tried, why)
        route = " -> ".join([*tried, other]) + f" ({why})"
        await self.outbox.move(tenant, "", moved, to="reroute", why=why, now=self.clock(), route=route)

    async def retry_dead(self, tenant: str, entry_id: str) -> bool:
        return await self.outbox.retry_dead(tenant, entry_id)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
