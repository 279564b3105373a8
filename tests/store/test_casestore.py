"""Case store on the real Valkey: life cycle, indexes and paging, counters, atomic side effects."""

from __future__ import annotations

import datetime as dt

import pytest
import redis.asyncio as aioredis

from channels.base import MediaRef, Outbound, Purpose
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER, TicketNotFound, TimerSet
from store.casestore import CaseStore
from store.model import (
    TRANSITIONS,
    ExtendField,
    IllegalTransition,
    IncrField,
    NewTicket,
    TicketEvent,
    TicketStatus,
)
from store.ticketid import parse_ticket_id

from .conftest import FakeTime, KeyCheck

S = TicketStatus
CITIZEN = "tel:+8613812345678"


def new(citizen: str = CITIZEN, **kw: object) -> NewTicket:
    return NewTicket(channel="sms", citizen=citizen, description="路灯坏了三天了", **kw)  # type: ignore[arg-type]


async def test_create_and_load(store: CaseStore, assert_keys: KeyCheck) -> None:
    photo = MediaRef("ab" * 32, "image/jpeg", 1234, "现场.jpg")
    tid = await store.create_ticket(
        "default",
        new(
            addresses=("mailto:li@example.com",),
            attachments=(photo,),
            latitude=33.9,
            longitude=117.9,
            provenance={"entered_by": "staff:7"},
        ),
        actor=f"citizen:{CITIZEN}",
    )
    assert tid.startswith("SN-261125-0001-")
    assert parse_ticket_id(tid) == tid
    t = await store.get_ticket("default", tid)
    assert t is not None
    assert (t.status, t.citizen, t.description) == (S.NEW, CITIZEN, "路灯坏了三天了")
    assert t.addresses == (CITIZEN, "mailto:li@example.com")
    assert t.attachments == (photo,)
    assert (t.latitude, t.longitude) == (33.9, 117.9)
    assert len(t.query_code) == 4 and t.query_code.isdigit()
    assert t.provenance == {"entered_by": "staff:7"}
    second = await store.create_ticket("default", new())
    assert second.startswith("SN-261125-0002-")
    (created,) = await store.timeline("default", tid)
    assert (created.kind, created.actor) == ("created", f"citizen:{CITIZEN}")
    p = "sulai:{default}:v1"
    await assert_keys(
        {
            f"{p}:ticket:SN-*": "none",
            f"{p}:idx:*": "none",
            f"{p}:seq:261125": (SEQ_LOW, 2 * 86400),
            f"{p}:stats:day:20261125": (keys.DAY_COUNTER_TTL - 10, keys.DAY_COUNTER_TTL),
            f"{p}:links:*": (keys.CONVERSATION_TTL - 10, keys.CONVERSATION_TTL),
        }
    )


SEQ_LOW = 2 * 86400 - 10


async def test_day_uses_tenant_time_zone(store: CaseStore, clock: FakeTime) -> None:
    clock.now = 1795622400.0 - 1  # 2026-11-25 23:59:59 Shanghai
    a = await store.create_ticket("default", new())
    clock.now = 1795622400.0  # 2026-11-26 00:00:00 Shanghai, still the 25th in UTC
    b = await store.create_ticket("default", new())
    assert a.startswith("SN-261125-0001-") and b.startswith("SN-261126-0001-")


async def test_every_transition_legal_and_illegal(redis_client: aioredis.Redis, clock: FakeTime) -> None:
    store = CaseStore(redis_client, clock=clock)
    for current in S:
        for wanted in S:
            tid = await store.create_ticket("default", new())
            # Walk to `current` through legal moves (a path exists for every status).
            for step in PATHS[current]:
                await store.change_status("default", tid, step, actor="staff:1")
            if wanted in TRANSITIONS[current]:
                await store.change_status("default", tid, wanted, actor="staff:1")
                t = await store.get_ticket("default", tid)
                assert t is not None and t.status == wanted
            else:
                before = await redis_client.llen(keys.ticket_events("default", tid))
                with pytest.raises(IllegalTransition) as err:
                    await store.change_status(
                        "default", tid, wanted, actor="staff:1", outbox=[outbound(f"x-{tid}")]
                    )
                assert (err.value.current, err.value.wanted) == (current, wanted)
                # Nothing written: no event, no outbox entry, status unchanged.
                assert await redis_client.llen(keys.ticket_events("default", tid)) == before
                assert await redis_client.exists(keys.outbox("default")) == 0
                t = await store.get_ticket("default", tid)
                assert t is not None and t.status == current


PATHS: dict[TicketStatus, list[TicketStatus]] = {
    S.NEW: [],
    S.ACCEPTED: [S.ACCEPTED],
    S.ASSIGNED: [S.ASSIGNED],
    S.REPLIED: [S.ASSIGNED, S.REPLIED],
    S.RESOLVED: [S.ASSIGNED, S.RESOLVED],
    S.CLOSED: [S.ASSIGNED, S.RESOLVED, S.CLOSED],
    S.REJECTED: [S.REJECTED],
    S.REDISPATCHED: [S.ASSIGNED, S.RESOLVED, S.REDISPATCHED],
}


def outbound(oid: str, ticket_id: str | None = None) -> Outbound:
    return Outbound(
        id=oid,
        tenant="default",
        recipient=CITIZEN,
        purpose=Purpose.STATUS,
        key="status.assigned",
        params={"ticket_id": ticket_id or ""},
        ticket_id=ticket_id,
    )


async def test_missing_ticket(store: CaseStore) -> None:
    with pytest.raises(TicketNotFound):
        await store.change_status("default", "SN-261125-9999-0", S.ACCEPTED, actor="staff:1")


async def test_status_change_moves_indexes_and_counts(
    store: CaseStore, redis_client: aioredis.Redis, assert_keys: KeyCheck
) -> None:
    tid = await store.create_ticket("default", new())
    assert (await store.list_tickets("default", "status", "new"))[0] == [tid]
    await store.change_status(
        "default",
        tid,
        S.ASSIGNED,
        actor="staff:1",
        fields={"unit": "城管局", "due_at": 1.5e9},
        outbox=[outbound("o1", tid)],
        timers_set=[TimerSet(f"sla:{tid}", 1.9e9, '{"kind":"sla"}')],
    )
    assert (await store.list_tickets("default", "status", "new"))[0] == []
    assert (await store.list_tickets("default", "unit", "城管局"))[0] == [tid]
    # Transfer to another unit: leaves the first unit's index.
    await store.change_status("default", tid, S.ASSIGNED, actor="staff:1", fields={"unit": "住建局"})
    assert (await store.list_tickets("default", "unit", "城管局"))[0] == []
    assert (await store.list_tickets("default", "unit", "住建局"))[0] == [tid]
    await store.change_status(
        "default", tid, S.RESOLVED, actor="staff:2", payload={"text": "已修复"}, timers_cancel=[f"sla:{tid}"]
    )
    t = await store.get_ticket("default", tid)
    assert t is not None and (t.status, t.unit, t.due_at) == (S.RESOLVED, "住建局", 1.5e9)
    stats = await store.day_stats("default", dt.date(2026, 11, 24), dt.date(2026, 11, 25))
    assert stats["2026-11-25"] == {
        "received": 1,
        "received:sms": 1,
        "received:citizen": 1,
        "assigned": 2,
        "resolved": 1,
        # Tickets, not events (first answer, first resolution), and the resolving unit's count.
        "tickets_answered": 1,
        "tickets_resolved": 1,
        "resolved:住建局": 1,
    }
    assert stats["2026-11-24"] == {} and stats["total"]["resolved"] == 1
    kinds = [(e.kind, e.payload.get("to")) for e in await store.timeline("default", tid)]
    assert kinds == [
        ("created", None),
        ("status", "assigned"),
        ("status", "assigned"),
        ("status", "resolved"),
    ]
    assert await redis_client.xlen(keys.outbox("default")) == 1
    p = "sulai:{default}:v1"
    await assert_keys(
        {
            f"{p}:ticket:*": "none",
            f"{p}:idx:created": "none",
            f"{p}:idx:citizen:*": "none",
            f"{p}:idx:status:resolved": "none",
            f"{p}:idx:unit:住建局": "none",
            f"{p}:seq:*": (SEQ_LOW, 2 * 86400),
            f"{p}:stats:day:*": "any",
            f"{p}:outbox": "none",
        }
    )


async def test_changes_extend_incr_and_events(store: CaseStore) -> None:
    tid = await store.create_ticket("default", new())
    photo = MediaRef("cd" * 32, "image/png", 10)
    await store.apply_changes(
        "default",
        [
            ExtendField(tid, "attachments", (photo, photo)),
            ExtendField(tid, "links", ("SN-261125-0007-3",)),
            IncrField(tid, "attempts"),
        ],
        events=[TicketEvent("supplement", f"citizen:{CITIZEN}", 1.0, {"text": "补充"})],
    )
    t = await store.get_ticket("default", tid)
    assert (
        t is not None and t.attachments == (photo,) and t.links == ("SN-261125-0007-3",) and t.attempts == 1
    )
    assert [e.kind for e in await store.timeline("default", tid)] == ["created", "supplement"]


async def test_placeholder_in_create_side_effects(store: CaseStore, redis_client: aioredis.Redis) -> None:
    tid = await store.create_ticket(
        "default",
        new(),
        outbox=[outbound(f"created:{TICKET_ID_PLACEHOLDER}", TICKET_ID_PLACEHOLDER)],
        timers_set=[TimerSet(f"remind:{TICKET_ID_PLACEHOLDER}", 2e9, f'{{"t":"{TICKET_ID_PLACEHOLDER}"}}')],
    )
    entries = await redis_client.xrange(keys.outbox("default"))
    assert entries is not None
    ((_, fields),) = entries
    assert fields is not None
    assert TICKET_ID_PLACEHOLDER.encode() not in fields[b"o"]
    assert f'"ticket_id":"{tid}"'.encode() in fields[b"o"] and f"created:{tid}".encode() in fields[b"o"]
    assert (
        await redis_client.hget(keys.timer_payload("default"), f"remind:{tid}") == f'{{"t":"{tid}"}}'.encode()
    )


async def test_paging_newest_first_with_ties(store: CaseStore, clock: FakeTime) -> None:
    made = []
    for i in range(23):
        clock.now = 1795572000.0 + (i // 3)  # groups of three share a creation time
        made.append(await store.create_ticket("default", new()))
    expected = sorted(made, key=lambda t: (-(made.index(t) // 3), [-ord(c) for c in t]))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        ids, cursor = await store.list_tickets("default", "created", cursor=cursor, limit=5)
        seen += ids
        pages += 1
        if cursor is None:
            break
    assert pages == 5 and seen == expected and len(set(seen)) == 23
    by_citizen, nxt = await store.list_tickets("default", "citizen", CITIZEN, limit=50)
    assert by_citizen == expected and nxt is None
    window, _ = await store.list_tickets("default", since=1795572002.0, until=1795572003.0, limit=50)
    assert sorted(window) == sorted(made[6:12])


async def test_lua_ids_past_four_digits_parse_in_python(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    # The id is drawn and check-digited in Lua; Python's parser must accept every one of them.
    await redis_client.set(keys.ticket_seq("default", "261125"), 9995)
    made = [await store.create_ticket("default", new()) for _ in range(10)]
    assert [parse_ticket_id(t) for t in made] == made
    assert made[3].startswith("SN-261125-9999-") and made[4].startswith("SN-261125-10000-")
