"""Idempotency-Key handling for every mutating staff route.

A client that retries a POST after a timeout must not accept, reply or resolve twice. The mark
lives in the store's idempotency namespace (``keys.idempotency``) under the external id
``staff:<staff id>:<key>``, so keys are per staff member, and it holds the first response:
``{"state": "done", "fp", "status", "body"}``. A repeat gets that response back byte for byte;
the same key with a different request (another path or body, see :func:`fingerprint`) is a
client bug and gets 422.

Ticket actions are *atomic*: their handler puts the mark into the same store write as the
action itself (:class:`Mark`, ``Write.idempotency``), so a crash between "did it" and "noted it"
cannot make a retry run the action twice, and two concurrent requests with one key make one
effect (the loser of the race gets the winner's response). A refusal (4xx) writes nothing, so it
is remembered afterwards with SET NX. Other routes (units, webhooks, dead letters) take the
simpler path of :func:`run_once`: a ``pending`` marker (SET NX, short TTL; a repeat meanwhile
gets 409), then the response. 5xx responses are never stored: the client should retry those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from gateway.staff.errors import ApiError
from store import keys

PENDING_TTL = 60  # a request crashing mid-way frees its key after this long
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Mark:
    """What an atomic handler writes with its action: the store external id and the request's
    fingerprint (stored with the response)."""

    external_id: str
    fingerprint: str


def external_id(staff_id: str, key: str) -> str:
    return f"staff:{staff_id}:{key}"


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or "{" in key or "}" in key:
        raise ApiError(
            400, "invalid_value", f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable characters", HEADER
        )
    return key


def response(status: int, body: str, replayed: bool = False) -> web.Response:
    resp = web.Response(status=status, body=body.encode("utf-8"), content_type="application/json")
    if replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


def replay(raw: bytes | str, print_: str) -> web.Response:
    """The stored response for a repeat; 422 for another request under the same key, 409 while
    the first (non-atomic) one still runs."""
    stored = json.loads(raw) if raw else {}
    if stored.get("fp") != print_:
        raise ApiError(422, "idempotency_key_reused", f"{HEADER} was used for another request", HEADER)
    if stored.get("state") != "done":
        raise ApiError(409, "in_progress", "a request with this Idempotency-Key is still running", HEADER)
    return response(int(stored["status"]), str(stored["body"]), replayed=True)


def _record(print_: str, resp: web.Response) -> str:
    body = resp.body if isinstance(resp.body, bytes) else b""
    return json.dumps(
        {"state": "done", "fp": print_, "status": resp.status, "body": body.decode("utf-8")},
        ensure_ascii=False,
    )


async def run_atomic(
    redis: aioredis.Redis,
    tenant: str,
    ext: str,
    print_: str,
    run: Callable[[], Awaitable[tuple[web.Response, bool]]],
) -> web.Response:
    """``run`` returns (response, marked): ``marked`` when the handler's write held the mark.
    A handler that wrote nothing (a refusal, or a route that turned out to change nothing) is
    remembered here, after the fact, with SET NX."""
    rkey = keys.idempotency(tenant, ext)
    raw = await redis.get(rkey)
    if raw is not None:
        return replay(raw, print_)
    try:
        resp, marked = await run()
    except ApiError as exc:
        resp, marked = exc.response(), False
    if marked or resp.status >= 500:
        return resp
    if not await redis.set(rkey, _record(print_, resp), nx=True, ex=keys.IDEMPOTENCY_TTL):
        raw = await redis.get(rkey)
        if raw is not None:
            return replay(raw, print_)
    return resp


async def run_once(
    redis: aioredis.Redis,
    tenant: str,
    ext: str,
    print_: str,
    run: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """Run ``run`` once for this external id; replay the stored response afterwards."""
    rkey = keys.idempotency(tenant, ext)
    claimed = await redis.set(rkey, json.dumps({"state": "pending", "fp": print_}), nx=True, ex=PENDING_TTL)
    if not claimed:
        raw = await redis.get(rkey)
        return replay(raw or json.dumps({"state": "pending", "fp": print_}), print_)
    try:
        resp = await run()
    except ApiError as exc:
        resp = exc.response()
    except BaseException:
        await redis.delete(rkey)
        raise
    if resp.status >= 500:
        await redis.delete(rkey)
        return resp
    await redis.set(rkey, _record(print_, resp), ex=keys.IDEMPOTENCY_TTL)
    return resp
