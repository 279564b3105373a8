"""Webhook events for citizen-side writes (a ticket filed, a supplement, a rating): the Outbounds
``TurnWebhooks`` builds for one conversation turn, queued in the turn's own store write, and
never a Redis round trip for a turn without ticket events."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from channels.base import Purpose
from gateway.config import TenantSettings
from gateway.staff import survey
from gateway.staff.webhooks_out import TurnWebhooks
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER, Write
from store.casestore import CaseStore
from store.model import AddEvent, NewTicket, TicketEvent, TicketStatus
from store.outbox_codec import Envelope
from tests.staff.conftest import MORNING, Clock

S = TicketStatus
CITIZEN = "mailto:zhangwei@example.com"
ACTOR = f"citizen:{CITIZEN}"


class Ticks:
    """A monotonic clock the test moves (the subscription cache's TTL)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def subscribe(redis: aioredis.Redis, *sub_ids: str) -> None:
    for sub in sub_ids:
        await redis.hset(
            keys.webhooks("default"), sub, json.dumps({"url": "https://x.example/", "secret": "s"})
        )


async def queued_webhooks(redis: aioredis.Redis) -> list[tuple[str, str, dict[str, Any]]]:
    rows: Any = await redis.xrange(keys.outbox("default"))
    out = [Envelope.from_json(fields[b"o"]).outbound for _, fields in rows]
    return [(o.id, o.recipient, json.loads(o.params["body"])) for o in out if o.purpose is Purpose.WEBHOOK]


async def test_filed_ticket_and_supplement_reach_every_subscription(redis_client: aioredis.Redis) -> None:
    clock = Clock()
    store = CaseStore(redis_client, clock=clock)
    hooks = TurnWebhooks(redis_client, clock=Ticks())
    await subscribe(redis_client, "wh1", "wh2")
    new = NewTicket(channel="email", citizen=CITIZEN, description="路灯坏了", entry_point="hotline")
    out = await hooks.outbounds(
        "default", "<a1{x}@example.com>", new_ticket=new, changes=[], tickets={}, actor=ACTOR, now=MORNING
    )
    result = await store.apply(Write(tenant="default", actor=ACTOR, new_ticket=new, outbox=out))
    tid = result.ticket_id
    assert tid is not None
    queued = await queued_webhooks(redis_client)
    assert [r for _, r, _ in queued] == ["webhook:wh1", "webhook:wh2"]
    for oid, _, body in queued:
        assert oid.startswith(f"{tid}:wh:") and "{" not in oid  # a valid outbound record key
        assert (body["ticket_id"], body["seq"]) == (tid, 0)
        assert body["event"] == {
            "kind": "created",
            "actor": ACTOR,
            "at": MORNING,
            "payload": {"channel": "email", "entry_point": "hotline", "intake_type": "citizen"},
        }
    # The event log agrees with what was announced.
    (created,) = await store.timeline("default", tid)
    assert created.to_json() == queued[0][2]["event"]

    supplement = AddEvent(
        tid, TicketEvent("supplement", ACTOR, MORNING + 60, {"text": "灯杆编号 17", "media": []})
    )
    out = await hooks.outbounds(
        "default",
        "<a2@example.com>",
        new_ticket=None,
        changes=[supplement],
        tickets={},
        actor=ACTOR,
        now=MORNING,
    )
    await store.apply(Write(tenant="default", changes=[supplement], outbox=out))
    queued = await queued_webhooks(redis_client)
    assert len(queued) == 4 and len({oid for oid, _, _ in queued}) == 4
    body = queued[-1][2]
    assert (body["ticket_id"], body["seq"], body["event"]["kind"]) == (tid, None, "supplement")
    assert body["event"]["payload"]["text"] == "灯杆编号 17"


async def test_rating_turn_announces_the_status_move(redis_client: aioredis.Redis) -> None:
    clock = Clock()
    store = CaseStore(redis_client, clock=clock)
    await subscribe(redis_client, "wh1")
    tid = await store.create_ticket(
        "default", NewTicket(channel="sms", citizen="tel:+8613812345678", description="x")
    )
    await store.change_status("default", tid, S.ASSIGNED, actor="staff:1", fields={"unit": "城管局"})
    await store.change_status("default", tid, S.RESOLVED, actor="staff:1")
    ticket = await store.get_ticket("default", tid)
    assert ticket is not None
    fx = survey.rating_changes(ticket, 5, "", "citizen:tel:+8613812345678", MORNING, TenantSettings())
    hooks = TurnWebhooks(redis_client, clock=Ticks())
    out = await hooks.outbounds(
        "default", "SM123", new_ticket=None, changes=fx.changes, tickets={tid: ticket},
        actor="citizen:tel:+8613812345678", now=MORNING,
    )  # fmt: skip
    kinds = [
        (
            json.loads(o.params["body"])["event"]["kind"],
            json.loads(o.params["body"])["event"]["payload"].get("to"),
        )
        for o in out
    ]
    assert kinds == [("rating", None), ("status", "closed")]
    status = json.loads(out[1].params["body"])["event"]
    assert status["payload"] == {"rating": 5, "from": "resolved", "to": "closed"}


async def test_no_round_trip_without_events_and_subscriptions_cached(redis_client: aioredis.Redis) -> None:
    nowhere = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        quiet = TurnWebhooks(nowhere, clock=Ticks())
        # A turn that files nothing and touches no ticket (a question asked back): no Redis at all.
        assert (
            await quiet.outbounds(
                "default", "m1", new_ticket=None, changes=[], tickets={}, actor=ACTOR, now=1.0
            )
            == []
        )
    finally:
        await nowhere.aclose()
    ticks = Ticks()
    hooks = TurnWebhooks(redis_client, clock=ticks, ttl_s=5.0)
    await subscribe(redis_client, "wh1")
    assert await hooks.subscriptions("default") == ("wh1",)
    await redis_client.hdel(keys.webhooks("default"), "wh1")
    ticks.now += 4.9
    assert await hooks.subscriptions("default") == ("wh1",)  # cached: no round trip per turn
    ticks.now += 0.2
    assert await hooks.subscriptions("default") == ()
    event = AddEvent(TICKET_ID_PLACEHOLDER, TicketEvent("supplement", ACTOR, 1.0, {}))
    assert (
        await hooks.outbounds(
            "default", "m2", new_ticket=None, changes=[event], tickets={}, actor=ACTOR, now=1.0
        )
        == []
    )
