"""Idempotency-Key handling for every mutating staff route.

A client that retries a POST after a timeout must not accept, reply or resolve twice. The first
request with a key marks it ``pending`` (SET NX, short TTL), runs, and stores its response under
the key for ``keys.IDEMPOTENCY_TTL``; a repeat gets the stored response back byte for byte. A
repeat while the first is still running gets 409; the same key with a different request (another
path or body) is a client bug and gets 422. Keys are per staff member, so two members cannot
collide. 5xx responses are not stored: the client should be able to retry those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web

from gateway.staff.errors import ApiError
from store import keys

PENDING_TTL = 60  # a request crashing mid-way frees its key after this long
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


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


async def run_once(
    redis: aioredis.Redis,
    tenant: str,
    staff_id: str,
    key: str,
    print_: str,
    run: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """Run ``run`` once for (staff, key); replay the stored response afterwards."""
    rkey = keys.staff_idempotency(tenant, staff_id, key)
    claimed = await redis.set(rkey, json.dumps({"state": "pending", "fp": print_}), nx=True, ex=PENDING_TTL)
    if not claimed:
        raw = await redis.get(rkey)
        stored = json.loads(raw) if raw else {"state": "pending", "fp": print_}
        if stored.get("fp") != print_:
            raise ApiError(422, "idempotency_key_reused", f"{HEADER} was used for another request", HEADER)
        if stored.get("state") != "done":
            raise ApiError(409, "in_progress", "a request with this Idempotency-Key is still running", HEADER)
        resp = web.Response(
            status=int(stored["status"]), body=stored["body"].encode("utf-8"), content_type="application/json"
        )
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
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
    body = resp.body if isinstance(resp.body, bytes) else b""
    record = {"state": "done", "fp": print_, "status": resp.status, "body": body.decode("utf-8")}
    await redis.set(rkey, json.dumps(record, ensure_ascii=False), ex=keys.IDEMPOTENCY_TTL)
    return resp
