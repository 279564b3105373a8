"""Conversation turns on the real Valkey: one winner per external id, version conflicts, replays,
tickets filed inside the turn script, and the in-flight lock."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from channels.base import Outbound, Purpose
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER, TimerSet, Write
from store.casestore import CaseStore
from store.model import AddEvent, NewTicket, SetStatus, TicketEvent, TicketStatus
from store.ticketid import parse_ticket_id
from store.turns import ApplyOutcome, InflightLock, Turns, TurnWrite

from .conftest import KeyCheck

ADDR = "wechat:wxsandbox000000000:o_abc"


def turn(version: int, external_id: str, state: dict[str, object], **kw: object) -> TurnWrite:
    return TurnWrite(
        tenant="default",
        address=ADDR,
        expected_version=version,
        new_state=json.dumps(state).encode(),
        external_id=external_id,
        stored_reply=json.dumps({"texts": [f"ok {external_id}"]}).encode(),
        **kw,  # type: ignore[arg-type]
    )


async def test_load_then_apply_then_replay(store: CaseStore) -> None:
    turns = Turns(store)
    first = await turns.load_turn("default", ADDR, "m1")
    assert (first.version, first.state, first.stored_reply) == (0, None, None)
    res = await turns.apply_turn(turn(0, "m1", {"step": 1}))
    assert (res.outcome, res.version) == (ApplyOutcome.APPLIED, 1)
    again = await turns.load_turn("default", ADDR, "m1")
    assert again.version == 1 and json.loads(again.state or b"") == {"step": 1}
    assert again.stored_reply == b'{"texts": ["ok m1"]}'
    # The same external id applied again (a provider retry that passed the load): duplicate.
    dup = await turns.apply_turn(turn(1, "m1", {"step": 99}))
    assert dup.outcome == ApplyOutcome.DUPLICATE and dup.reply == b'{"texts": ["ok m1"]}'
    assert (await turns.load_turn("default", ADDR, "m2")).version == 1


async def test_version_conflict_writes_nothing(store: CaseStore, redis_client: aioredis.Redis) -> None:
    turns = Turns(store)
    await turns.apply_turn(turn(0, "m1", {"step": 1}))
    stale = await turns.apply_turn(
        turn(
            0, "m2", {"step": "stale"}, new_ticket=NewTicket(channel="wechat", citizen=ADDR, description="x")
        )
    )
    assert (stale.outcome, stale.version) == (ApplyOutcome.CONFLICT, 1)
    assert await redis_client.exists(keys.idempotency("default", "m2")) == 0
    assert await store.count("default") == 0


async def test_fifty_concurrent_applies_of_one_external_id(store: CaseStore, assert_keys: KeyCheck) -> None:
    turns = Turns(store)
    new = NewTicket(channel="wechat", citizen=ADDR, description="路灯坏了")

    async def one(i: int) -> ApplyOutcome:
        loaded = await turns.load_turn("default", ADDR, "dup-msg")
        if loaded.stored_reply is not None:
            return ApplyOutcome.DUPLICATE
        res = await turns.apply_turn(turn(loaded.version, "dup-msg", {"by": i}, new_ticket=new))
        return res.outcome

    outcomes = await asyncio.gather(*(one(i) for i in range(50)))
    assert outcomes.count(ApplyOutcome.APPLIED) == 1
    assert await store.count("default") == 1
    p = "sulai:{default}:v1"
    await assert_keys(
        {
            f"{p}:conv:{ADDR}": (keys.CONVERSATION_TTL - 10, keys.CONVERSATION_TTL),
            f"{p}:idem:dup-msg": (keys.IDEMPOTENCY_TTL - 10, keys.IDEMPOTENCY_TTL),
            f"{p}:ticket:*": "none",
            f"{p}:idx:*": "none",
            f"{p}:seq:*": (2 * 86400 - 10, 2 * 86400),
            f"{p}:stats:day:*": (keys.DAY_COUNTER_TTL - 10, keys.DAY_COUNTER_TTL),
        }
    )


async def test_turn_files_ticket_with_id_everywhere(
    store: CaseStore, redis_client: aioredis.Redis, assert_keys: KeyCheck
) -> None:
    turns = Turns(store)
    ph = TICKET_ID_PLACEHOLDER
    ob = Outbound(
        id=f"created:{ph}",
        tenant="default",
        recipient="tel:+8613812345678",
        purpose=Purpose.TICKET_CREATED,
        key="ticket.created",
        params={"id": ph},
        ticket_id=ph,
    )
    tw = TurnWrite(
        tenant="default",
        address=ADDR,
        expected_version=0,
        new_state=json.dumps({"last_ticket": ph}).encode(),
        external_id="m1",
        stored_reply=json.dumps({"texts": [f"已受理，工单号 {ph}"]}, ensure_ascii=False).encode(),
        new_ticket=NewTicket(
            channel="wechat",
            citizen=ADDR,
            description="路灯坏了",
            addresses=("tel:+8613812345678",),
            query_code="4821",
        ),
        ticket_changes=[AddEvent(ph, TicketEvent("note", "system", 1.0, {"about": ph}))],
        outbox=[ob],
        timers_set=[TimerSet("survey:x", 2e9, json.dumps({"ticket": ph}))],
        timers_cancel=["draft-expiry:o_abc"],
        address_state={ADDR: {"last_inbound": "1795572000"}},
    )
    res = await turns.apply_turn(tw)
    assert res.outcome == ApplyOutcome.APPLIED and res.ticket_id is not None
    tid = parse_ticket_id(res.ticket_id)
    assert res.reply is not None and tid in res.reply.decode() and ph not in res.reply.decode()
    loaded = await turns.load_turn("default", ADDR, "m1")
    assert json.loads(loaded.state or b"") == {"last_ticket": tid}
    assert loaded.stored_reply == res.reply
    t = await store.get_ticket("default", tid)
    assert t is not None and t.query_code == "4821" and t.status == TicketStatus.NEW
    events = await store.timeline("default", tid)
    assert [e.kind for e in events] == ["created", "note"] and events[1].payload == {"about": tid}
    entries = await redis_client.xrange(keys.outbox("default"))
    assert entries is not None
    ((_, fields),) = entries
    assert fields is not None
    assert ph.encode() not in fields[b"o"] and tid.encode() in fields[b"o"]
    assert (
        await redis_client.hget(keys.timer_payload("default"), "survey:x")
        == json.dumps({"ticket": tid}).encode()
    )
    p = "sulai:{default}:v1"
    month = (keys.CONVERSATION_TTL - 10, keys.CONVERSATION_TTL)
    await assert_keys(
        {
            f"{p}:conv:{ADDR}": month,
            f"{p}:addr:{ADDR}": month,
            f"{p}:links:*": month,
            f"{p}:idem:m1": (keys.IDEMPOTENCY_TTL - 10, keys.IDEMPOTENCY_TTL),
            f"{p}:ticket:*": "none",
            f"{p}:idx:*": "none",
            f"{p}:outbox": "none",
            f"{p}:timers": "none",
            f"{p}:timers:payload": "none",
            f"{p}:seq:*": (2 * 86400 - 10, 2 * 86400),
            f"{p}:stats:day:*": "any",
        }
    )


async def test_rating_with_non_strict_close(store: CaseStore) -> None:
    turns = Turns(store)
    tid = await store.create_ticket("default", NewTicket(channel="sms", citizen=ADDR, description="x"))
    # The ticket is not resolved yet: a non-strict close is skipped, the rest of the turn applies.
    res = await turns.apply_turn(
        turn(
            0,
            "r1",
            {"s": 1},
            ticket_changes=[
                SetStatus(tid, TicketStatus.CLOSED, f"citizen:{ADDR}", {"rating": 5}, strict=False)
            ],
        )
    )
    assert res.outcome == ApplyOutcome.APPLIED and res.skipped == (f"{tid}:closed",)
    for s in (TicketStatus.ASSIGNED, TicketStatus.RESOLVED):
        await store.change_status("default", tid, s, actor="staff:1")
    res = await turns.apply_turn(
        turn(
            1,
            "r2",
            {"s": 2},
            ticket_changes=[
                SetStatus(tid, TicketStatus.CLOSED, f"citizen:{ADDR}", {"rating": 5}, strict=False)
            ],
        )
    )
    assert res.skipped == ()
    t = await store.get_ticket("default", tid)
    assert t is not None and t.status == TicketStatus.CLOSED


async def test_patch_conversation_bumps_version(store: CaseStore, redis_client: aioredis.Redis) -> None:
    turns = Turns(store)
    await turns.apply_turn(turn(0, "m1", {"step": 1}))

    def add_survey(state: bytes | None) -> bytes:
        data = json.loads(state or b"{}")
        data["survey"] = "SN-1"
        return json.dumps(data).encode()

    ob = Outbound(
        id="survey:SN-1", tenant="default", recipient=ADDR, purpose=Purpose.SURVEY, key="survey.ask"
    )
    version = await turns.patch_conversation("default", ADDR, add_survey, extra=Write("default", outbox=[ob]))
    assert version == 2
    loaded = await turns.load_turn("default", ADDR, "m2")
    assert json.loads(loaded.state or b"") == {"step": 1, "survey": "SN-1"}
    assert await redis_client.xlen(keys.outbox("default")) == 1
    # A turn that read version 1 before the patch now conflicts instead of losing the survey.
    assert (await turns.apply_turn(turn(1, "m2", {"step": 2}))).outcome == ApplyOutcome.CONFLICT


async def test_inflight_lock(redis_client: aioredis.Redis, assert_keys: KeyCheck) -> None:
    lock = InflightLock(redis_client)
    tokens = await asyncio.gather(*(lock.acquire("default", "m1", ttl_ms=5000) for _ in range(20)))
    held = [t for t in tokens if t]
    assert len(held) == 1
    await assert_keys({"sulai:{default}:v1:inflight:m1": (1, 5)})
    assert not await lock.release("default", "m1", "not-my-token")
    assert await lock.release("default", "m1", held[0])
    assert await lock.acquire("default", "m1") is not None
