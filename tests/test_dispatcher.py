"""The outbox dispatcher on the real Valkey, with stand-in adapters written here (third-party
providers are what they stand in for): retries with backoff, dead letters, fallback to another
address, restart safety, reclaiming a cancelled dispatcher's entries, delivery reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
import redis.asyncio as aioredis

from channels.base import (
    Capabilities,
    ChannelAdapter,
    DeliveryUpdate,
    HttpAnswer,
    Outbound,
    Purpose,
    RenderedMessage,
    Route,
    SendError,
    SendErrorCode,
    SendResult,
    WebhookRequest,
    WebhookResult,
    verify_adapter,
)
from gateway.dispatcher import Dispatcher, DispatchSettings, backoff_delay
from store import keys
from store.outbox import Outbox

T = "default"
TEL = "tel:+8613812345678"
MAIL = "mailto:li@example.com"


@dataclass
class StandInAdapter:
    """Implements the ChannelAdapter Protocol; fails the first ``fail_times`` sends with ``error``."""

    name: str
    fail_times: int = 0
    error: SendErrorCode = SendErrorCode.TEMPORARY
    delay: float = 0.0
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(500, False, False))
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (outbound id, recipient, text)
    calls: int = 0
    notify_after: int = 0  # set `reached` once this many messages went out
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def routes(self) -> Sequence[Route]:
        return ()

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        return WebhookResult()

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        return HttpAnswer()

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.calls <= self.fail_times:
            raise SendError(self.error, "stand-in failure", provider_code="X1")
        self.sent.append((outbound.id, outbound.recipient, message.text))
        if self.notify_after and len(self.sent) >= self.notify_after:
            self.reached.set()
        return SendResult(provider_id=f"{self.name}-{self.calls}", status="sent", path="api")

    def secrets(self) -> Iterable[str]:
        return ()

    async def close(self) -> None:
        return None


def render(ob: Outbound, channel: str) -> RenderedMessage:
    return RenderedMessage(text=f"[{channel}] {ob.key} {dict(ob.params)}")


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ob(oid: str, recipient: str = TEL, not_before: float = 0.0) -> Outbound:
    return Outbound(
        id=oid,
        tenant=T,
        recipient=recipient,
        purpose=Purpose.STATUS,
        key="status.assigned",
        params={"unit": "城管局"},
        ticket_id="SN-261125-0001-7",
        not_before=not_before,
    )


def make(redis: aioredis.Redis, clock: Clock, **adapters: ChannelAdapter) -> Dispatcher:
    for a in adapters.values():
        verify_adapter(a)
    settings = DispatchSettings(
        max_attempts=3, backoff_base=2.0, backoff_cap=60.0, jitter=0.2, claim_idle_ms=60_000
    )
    return Dispatcher(redis, [T], adapters, render, settings, clock=clock)


async def test_sends_records_and_acks(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms"), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a"), ob("b")])
    assert await d.dispatch_once() == 2
    assert [s[0] for s in sms.sent] == ["a", "b"] and sms.sent[0][2].startswith("[sms] status.assigned")
    rec = await d.outbox.record(T, "a")
    assert (rec["status"], rec["provider_id"], rec["attempts"], rec["path"]) == ("sent", "sms-1", "1", "api")
    assert await redis_client.get(keys.provider_message(T, "sms", "sms-1")) == b"a"
    assert await redis_client.xlen(keys.outbox(T)) == 0  # acknowledged entries are deleted
    assert (await redis_client.xpending(keys.outbox(T), "dispatch"))["pending"] == 0
    ttl = await redis_client.ttl(keys.outbound_record(T, "a"))
    assert keys.SENT_MARK_TTL - 10 <= ttl <= keys.SENT_MARK_TTL


async def test_an_id_already_sent_is_never_sent_again(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms"), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    await d.dispatch_once()
    # A replayed cause, or a restarted process re-reading the entry, produces the same id again.
    await Outbox(redis_client).enqueue(T, [ob("a")])
    restarted = make(redis_client, clock, sms=sms)
    assert await restarted.dispatch_once() == 1
    assert [s[0] for s in sms.sent] == ["a"]


async def test_retries_with_backoff_then_success(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms", fail_times=2), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    dues = []
    for _ in range(2):
        await d.dispatch_once()
        rows = await redis_client.zrange(keys.outbox_delayed(T), 0, -1, withscores=True)
        ((_member, due),) = cast(list[tuple[bytes, float]], rows)
        dues.append(due - clock.now)
        assert await d.dispatch_once() == 0  # not due yet: nothing sent
        clock.now = due
    assert 1.6 <= dues[0] <= 2.4 and 3.2 <= dues[1] <= 4.8  # 2 s then 4 s, ±20 % jitter
    await d.dispatch_once()
    assert [s[0] for s in sms.sent] == ["a"]
    rec = await d.outbox.record(T, "a")
    assert (rec["status"], rec["attempts"]) == ("sent", "3")
    assert await redis_client.zcard(keys.outbox_delayed(T)) == 0


async def test_dead_letter_after_max_attempts_and_staff_retry(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms", fail_times=3), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    for _ in range(3):
        await d.dispatch_once()
        clock.now += 100
    assert sms.calls == 3 and sms.sent == []
    (dead,), cursor = await d.outbox.dead_letters(T)
    assert cursor is None and dead.envelope.outbound.id == "a" and dead.envelope.attempts == 3
    assert "gave up after 3 attempts" in dead.why and "temporary" in dead.why
    assert (await d.outbox.record(T, "a"))["status"] == "dead"
    assert await d.retry_dead(T, dead.entry_id)
    await d.dispatch_once()
    assert [s[0] for s in sms.sent] == ["a"] and (await d.outbox.dead_letters(T))[0] == []


async def test_permanent_error_is_dead_at_once(redis_client: aioredis.Redis) -> None:
    sms = StandInAdapter("sms", fail_times=1, error=SendErrorCode.REJECTED)
    d = make(redis_client, Clock(), sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    await d.dispatch_once()
    (dead,), _ = await d.outbox.dead_letters(T)
    assert dead.why.startswith("rejected") and sms.calls == 1


async def test_fallback_to_another_address_is_recorded(redis_client: aioredis.Redis) -> None:
    sms = StandInAdapter("sms", fail_times=1, error=SendErrorCode.OPTED_OUT)
    email = StandInAdapter("email")
    d = make(redis_client, Clock(), sms=sms, email=email)
    await redis_client.sadd(keys.citizen_addresses(T, TEL), MAIL)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    await d.dispatch_once()
    await d.dispatch_once()
    assert sms.sent == [] and [(s[0], s[1]) for s in email.sent] == [("a", MAIL)]
    rec = await d.outbox.record(T, "a")
    assert rec["status"] == "sent" and rec["recipient"] == MAIL and rec["channel"] == "email"
    assert rec["route"].startswith(f"{TEL} -> {MAIL}") and "opted-out" in rec["route"]


async def test_no_other_address_is_undeliverable(redis_client: aioredis.Redis) -> None:
    sms = StandInAdapter("sms", fail_times=5, error=SendErrorCode.UNREACHABLE)
    d = make(redis_client, Clock(), sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a")])
    await d.dispatch_once()
    (dead,), _ = await d.outbox.dead_letters(T)
    assert dead.why.startswith("undeliverable")
    assert await redis_client.hget(keys.address_state(T, TEL), "unreachable") == b"1"


async def test_quiet_hours_entry_waits_for_not_before(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms"), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a", not_before=clock.now + 3600)])
    await d.dispatch_once()
    assert sms.sent == [] and await redis_client.zcard(keys.outbox_delayed(T)) == 1
    clock.now += 3600
    await d.dispatch_once()
    assert [s[0] for s in sms.sent] == ["a"]


async def test_cancelled_dispatcher_entries_are_reclaimed_and_sent_once(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms", delay=0.02, notify_after=5), Clock()
    first = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob(f"m{i}") for i in range(20)])
    task = asyncio.create_task(first.dispatch_once())
    await sms.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done_by_first = len(sms.sent)
    assert 5 <= done_by_first < 20
    pending = (await redis_client.xpending(keys.outbox(T), "dispatch"))["pending"]
    assert pending == 20 - done_by_first  # read by the first, never acknowledged
    second = Dispatcher(
        redis_client,
        [T],
        {"sms": sms},
        render,
        DispatchSettings(claim_idle_ms=1, consumer="second"),
        clock=clock,
    )
    await asyncio.sleep(0.01)
    await second.dispatch_once()
    ids = [s[0] for s in sms.sent]
    assert sorted(ids) == sorted(f"m{i}" for i in range(20)) and len(ids) == len(set(ids))
    assert (await redis_client.xpending(keys.outbox(T), "dispatch"))["pending"] == 0


async def test_delivery_reports_are_monotonic(redis_client: aioredis.Redis) -> None:
    sms, clock = StandInAdapter("sms"), Clock()
    d = make(redis_client, clock, sms=sms)
    await Outbox(redis_client).enqueue(T, [ob("a"), ob("b")])
    await d.dispatch_once()
    assert await d.apply_delivery(T, "sms", DeliveryUpdate("sms-1", "delivered")) == "a"
    assert await d.apply_delivery(T, "sms", DeliveryUpdate("sms-1", "sent")) == "a"  # late
    assert (await d.outbox.record(T, "a"))["status"] == "delivered"
    assert await d.apply_delivery(T, "sms", DeliveryUpdate("unknown", "delivered")) is None
    await d.apply_delivery(T, "sms", DeliveryUpdate("sms-2", "undelivered", "30003", permanent_failure=True))
    assert (await d.outbox.record(T, "b"))["status"] == "undelivered"
    assert await redis_client.hget(keys.address_state(T, TEL), "unreachable") == b"1"
    # The next push to that citizen goes to their other address without trying the dead one.
    email = StandInAdapter("email")
    d2 = make(redis_client, clock, sms=sms, email=email)
    await redis_client.sadd(keys.citizen_addresses(T, TEL), MAIL)
    await Outbox(redis_client).enqueue(T, [ob("c")])
    await d2.dispatch_once()
    await d2.dispatch_once()
    assert sms.calls == 2 and [s[1] for s in email.sent] == [MAIL]


def test_backoff_is_capped() -> None:
    import random

    s = DispatchSettings(backoff_base=2.0, backoff_cap=60.0, jitter=0.2)
    rng = random.Random(1)
    assert all(backoff_delay(n, s, rng) <= 60.0 for n in range(1, 40))
    assert backoff_delay(1, s, rng, retry_after=30.0) >= 30.0


async def test_run_loop_sends_until_stopped(redis_client: aioredis.Redis) -> None:
    sms = StandInAdapter("sms", notify_after=3)
    d = Dispatcher(redis_client, [T], {"sms": sms}, render, DispatchSettings(block_ms=50))
    stop = asyncio.Event()
    runner = asyncio.create_task(d.run(stop))
    await Outbox(redis_client).enqueue(T, [ob("a"), ob("b"), ob("c")])
    await asyncio.wait_for(sms.reached.wait(), 5)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert sorted(s[0] for s in sms.sent) == ["a", "b", "c"]


async def test_outbox_depth_and_age_are_observed_for_metrics(redis_client: aioredis.Redis) -> None:
    from gateway import metrics

    sms, clock = StandInAdapter("sms"), Clock()
    d = make(redis_client, clock, sms=sms)
    await d.dispatch_once(block_ms=None)  # creates the consumer group on an empty stream
    await Outbox(redis_client).enqueue(T, [ob("a"), ob("b")])
    await d.observe()
    assert metrics.outbox_depth.labels(T)._value.get() == 2
    await d.dispatch_once()
    await d.observe()
    assert metrics.outbox_depth.labels(T)._value.get() == 0
    assert metrics.outbox_oldest_age.labels(T)._value.get() == 0
    assert metrics.sends.labels("sms", "sent")._value.get() >= 2
