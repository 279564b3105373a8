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
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
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
from gateway.staff.routing import Call, Result
from store import keys

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
