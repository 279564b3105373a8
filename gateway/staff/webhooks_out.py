"""Outbound webhooks: ticket events for existing government systems.

A subscription (per tenant) is a URL and a secret. Every ticket event becomes an Outbound with
purpose WEBHOOK addressed ``webhook:<subscription id>``, queued in the same transaction as the
event, so delivery gets the outbox's retries and backoff. :class:`WebhookSender` is the
``webhook`` pseudo-channel the dispatcher sends them with: it POSTs the JSON body with

    X-Sulai-Timestamp: <unix seconds>
    X-Sulai-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

so the receiver can check authenticity and refuse replays. SSRF: the target's host is resolved
at connect time by :class:`SafeResolver`, which refuses loopback, private, link-local and other
non-public addresses unless the config allows them, leaving no window for DNS rebinding.

Staff writes queue their events in :func:`gateway.staff.queries.mutate`; citizen-side writes (a
ticket filed, a supplement, an answer, a rating) get theirs from :class:`TurnWebhooks`, which the
intake calls with what a turn is about to write, so they go into the turn's own store write.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from channels.base import (
    Capabilities,
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
)
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.queries import expected_events
from gateway.staff.routing import Call, Result
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER
from store.model import NewTicket, Ticket, TicketChange, TicketEvent, TicketStatus

SUBSCRIBE_BODY = (
    Field("url", required=True, min_length=8, max_length=500, description="http(s) URL receiving events"),
    Field("secret", min_length=16, max_length=200, description="HMAC key; generated when omitted"),
)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def public_ip(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class SafeResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses non-public addresses (SSRF guard)."""

    def __init__(self, allow_private: bool = False) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            bad = [r["host"] for r in results if not public_ip(r["host"])]
            if bad:
                raise OSError(f"webhook target {host} resolves to a non-public address {bad[0]}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, allow_private: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ApiError(400, "invalid_value", "url must be http(s)://host/… without credentials", "url")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if not allow_private and (host == "localhost" or (literal is not None and not public_ip(host))):
        raise ApiError(422, "forbidden_target", "url points at a loopback or private address", "url")
    return url


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


async def subscriptions(redis: aioredis.Redis, tenant: str) -> dict[str, dict[str, Any]]:
    raw = await redis.hgetall(keys.webhooks(tenant))
    return {_s(k): json.loads(v) for k, v in raw.items()}


async def list_webhooks(ctx: StaffContext, call: Call) -> Result:
    subs = await subscriptions(ctx.redis, ctx.tid)
    return 200, {
        "items": [{"id": k, "url": v["url"], "created": v.get("created")} for k, v in sorted(subs.items())]
    }


async def create_webhook(ctx: StaffContext, call: Call) -> Result:
    url = check_url(call.body["url"], ctx.webhook_allow_private)
    secret = call.body.get("secret") or secrets.token_urlsafe(32)
    sub_id = "wh" + secrets.token_hex(5)
    record = {"url": url, "secret": secret, "created": ctx.clock()}
    await ctx.redis.hset(keys.webhooks(ctx.tid), sub_id, json.dumps(record))
    return 201, {"id": sub_id, "url": url, "secret": secret}


async def delete_webhook(ctx: StaffContext, call: Call) -> Result:
    sub_id = call.path["webhook_id"]
    if "{" in sub_id or "}" in sub_id or not await ctx.redis.hdel(keys.webhooks(ctx.tid), sub_id):
        raise not_found("webhook subscription")
    return 200, {"id": sub_id, "deleted": True}


class WebhookSender:
    """The ``webhook`` pseudo-channel: implements channels.base.ChannelAdapter for sending only."""

    name = "webhook"
    capabilities = Capabilities(max_text_chars=1_000_000, inline_reply=False, media=False)

    def __init__(
        self, redis: aioredis.Redis, tenant: str, *, allow_private: bool = False,
        clock: Callable[[], float] = time.time, timeout: float = 10.0,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._tenant = tenant
        self._clock = clock
        connector = aiohttp.TCPConnector(resolver=SafeResolver(allow_private))
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        )

    def routes(self) -> Sequence[Route]:
        return ()

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        raise NotImplementedError("the webhook pseudo-channel receives nothing")

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        return HttpAnswer()

    def secrets(self) -> Iterable[str]:
        return ()

    async def close(self) -> None:
        await self._session.close()

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        sub_id = outbound.recipient.partition(":")[2]
        raw = await self._redis.hget(keys.webhooks(self._tenant), sub_id)
        if raw is None:
            raise SendError(SendErrorCode.UNREACHABLE, f"subscription {sub_id} was deleted")
        sub = json.loads(raw)
        body = (outbound.params.get("body") or message.text).encode()
        ts = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "X-Sulai-Timestamp": str(ts),
            "X-Sulai-Signature": sign(sub["secret"], ts, body),
            "X-Sulai-Delivery": outbound.id,
        }
        try:
            async with self._session.post(
                sub["url"], data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if "non-public" in str(exc):
                raise SendError(SendErrorCode.REJECTED, str(exc)) from None
            raise SendError(SendErrorCode.TEMPORARY, str(exc)) from None
        if status == 429 or status >= 500:
            raise SendError(
                SendErrorCode.TEMPORARY if status >= 500 else SendErrorCode.RATE_LIMITED, f"HTTP {status}"
            )
        if status >= 300:
            raise SendError(SendErrorCode.REJECTED, f"HTTP {status}", provider_code=str(status))
        return SendResult(provider_id=outbound.id, status="delivered", path="webhook")


SUBSCRIPTION_TTL_S = 5.0  # a new or deleted subscription applies to citizen events within this


def turn_events(
    new_ticket: NewTicket | None,
    changes: Sequence[TicketChange],
    statuses: Mapping[str, TicketStatus],
    actor: str,
    now: float,
) -> list[tuple[str, TicketEvent]]:
    """The events a turn's write will append, in order, as the apply script writes them: the
    new ticket's ``created`` (named TICKET_ID_PLACEHOLDER), then each change's. ``statuses``
    holds the current status of tickets the changes move (status events name from and to)."""
    before = dict(statuses)
    events: list[tuple[str, TicketEvent]] = []
    if new_ticket is not None:
        payload = {
            "channel": new_ticket.channel,
            "entry_point": new_ticket.entry_point,
            "intake_type": new_ticket.intake_type,
        }
        events.append((TICKET_ID_PLACEHOLDER, TicketEvent("created", actor, now, payload)))
        before[TICKET_ID_PLACEHOLDER] = TicketStatus.NEW
    return events + expected_events(before, changes, now)


class TurnWebhooks:
    """Webhook Outbounds for the events of one conversation turn (one per subscription and event).

    The subscription ids are cached per tenant for ``ttl_s`` seconds: a turn with events costs no
    extra round trip while the cache is warm, and a turn without ticket events never touches
    Redis. Ids derive from a hash of the inbound's external id and the event's place in the turn
    (a turn's write is applied once: the idempotency mark is in the same script). ``seq`` in the
    body is the event's position in its ticket's log when known (a ticket filed in this turn),
    else null: the intake does not read event counts."""

    def __init__(
        self, redis: aioredis.Redis, *, ttl_s: float = SUBSCRIPTION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def subscriptions(self, tenant: str) -> tuple[str, ...]:
        now = self._clock()
        hit = self._cache.get(tenant)
        if hit is not None and now < hit[0]:
            return hit[1]
        subs = tuple(sorted(_s(k) for k in await self._redis.hkeys(keys.webhooks(tenant))))
        self._cache[tenant] = (now + self._ttl, subs)
        return subs

    async def outbounds(
        self, tenant: str, external_id: str, *, new_ticket: NewTicket | None,
        changes: Sequence[TicketChange], tickets: Mapping[str, Ticket], actor: str, now: float,
    ) -> list[Outbound]:  # fmt: skip
        """What to add to the turn's outbox (TICKET_ID_PLACEHOLDER names a ticket filed now)."""
        statuses = {tid: t.status for tid, t in tickets.items()}
        events = turn_events(new_ticket, changes, statuses, actor, now)
        if not events:
            return []
        subs = await self.subscriptions(tenant)
        if not subs:
            return []
        tag = hashlib.sha256(external_id.encode()).hexdigest()[:16]  # ids from providers may hold braces
        seq: dict[str, int] = {TICKET_ID_PLACEHOLDER: 0} if new_ticket is not None else {}
        out: list[Outbound] = []
        for i, (tid, ev) in enumerate(events):
            n = seq.get(tid)
            if n is not None:
                seq[tid] = n + 1
            body = json.dumps({"ticket_id": tid, "seq": n, "event": ev.to_json()}, ensure_ascii=False)
            out += [
                Outbound(
                    id=f"{tid}:wh:{sub}:{tag}:{i}", tenant=tenant, recipient=f"webhook:{sub}",
                    purpose=Purpose.WEBHOOK, key="webhook.event", params={"body": body}, ticket_id=tid,
                )
                for sub in subs
            ]  # fmt: skip
        return out
