"""gateway/intake.py against the real Valkey: dedupe, concurrency, restarts, what a ticket records."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from channels.base import Inbound, InboundKind
from conversation.catalogue import Catalogue
from conversation.settings import default_settings
from gateway.config import TenantSettings
from gateway.intake import Intake
from store import keys
from store.apply import TenantIds
from store.casestore import CaseStore
from store.outbox_codec import Envelope
from store.ticketid import find_ticket_ids

WX = "wechat:wxsandbox000000000:o_intake_citizen_01"
EVERYTHING = "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678"


def make_intake(redis: aioredis.Redis) -> Intake:
    store = CaseStore(redis, tenants={"default": TenantIds()})
    return Intake(redis, store, default_settings(), Catalogue.load(), TenantSettings())


def text(body: str, msg_id: str, sender: str = WX) -> Inbound:
    return Inbound(
        channel="wechat",
        account="gh_sandbox",
        sender=sender,
        external_id=f"wx:{msg_id}",
        kind=InboundKind.TEXT,
        received_at=datetime.now(UTC),
        text=body,
    )


def inline_deadline() -> float:
    return time.monotonic() + 5.0


def ticket_ids(texts: tuple[str, ...]) -> list[str]:
    return [t for reply in texts for t in find_ticket_ids(reply) if isinstance(t, str)]


async def test_two_identical_inbounds_at_once_file_one_ticket(redis_client: aioredis.Redis) -> None:
    intake = make_intake(redis_client)
    await intake.handle(text(EVERYTHING, "1001"), inline_deadline())
    confirm = text("1", "1002")
    first, second = await asyncio.gather(
        intake.handle(confirm, inline_deadline()), intake.handle(confirm, inline_deadline())
    )
    ids = ticket_ids(first.texts) + ticket_ids(second.texts)
    assert len(set(ids)) == 1, (first, second)
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert await redis_client.zcard(keys.index_created("default")) == 1


async def test_a_replay_returns_the_stored_answer_and_changes_nothing(redis_client: aioredis.Redis) -> None:
    intake = make_intake(redis_client)
    await intake.handle(text(EVERYTHING, "2001"), inline_deadline())
    filed = await intake.handle(text("1", "2002"), inline_deadline())
    version = await redis_client.hget(keys.conversation("default", WX), "version")
    replay = await intake.handle(text("1", "2002"), inline_deadline())
    assert replay.duplicate and replay.texts == filed.texts
    assert await redis_client.hget(keys.conversation("default", WX), "version") == version


async def test_the_dialogue_survives_a_restart_between_turns(redis_client: aioredis.Redis) -> None:
    await make_intake(redis_client).handle(text("路灯坏了，晚上很黑", "3001"), inline_deadline())
    # A new Intake (a restarted gateway) holds nothing in memory: the state is in the store.
    restarted = make_intake(redis_client)
    await restarted.handle(text("在睢城街道人民路88号门口", "3002"), inline_deadline())
    await make_intake(redis_client).handle(text("13812345678", "3003"), inline_deadline())
    filed = await make_intake(redis_client).handle(text("1", "3004"), inline_deadline())
    [ticket_id] = ticket_ids(filed.texts)
    ticket = await CaseStore(redis_client).get_ticket("default", ticket_id)
    assert ticket is not None
    assert ticket.description.startswith("路灯坏了")
    assert "人民路88号" in ticket.location_text
    # The mobile number typed in WeChat becomes an SMS address of the ticket for fallback pushes.
    assert ticket.addresses == (WX, "tel:+8613812345678")


async def test_a_late_turn_sends_its_reply_through_the_outbox(redis_client: aioredis.Redis) -> None:
    intake = make_intake(redis_client)
    outcome = await intake.handle(text("路灯坏了，晚上很黑", "4001"), deadline=time.monotonic() - 1)
    assert outcome.texts == ()
    entries = await redis_client.xrange(keys.outbox("default"))
    assert entries is not None and len(entries) == 1
    [(_, fields)] = entries
    assert fields is not None
    [envelope] = [Envelope.from_json(v) for v in fields.values()]
    assert (envelope.outbound.key, envelope.outbound.recipient) == ("ask_location", WX)
    # …and the stored answer for a retry of this message is "nothing inline" (already queued).
    replay = await intake.handle(text("路灯坏了，晚上很黑", "4001"), inline_deadline())
    assert replay.duplicate and replay.texts == ()
