"""aiohttp app factories: the public app (provider webhooks) and the staff app (own port).

The HTTP layer owns cross-cutting work (STYLE.md 6): request ids, error mapping to clear
statuses with a body naming the problem, size limits, metrics. Public webhooks and the staff API
are separate apps on separate ports, so the staff surface is never exposed where providers post.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from gateway import metrics
from gateway.logs import request_id

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REDIS_KEY: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)
APP_NAME_KEY: web.AppKey[str] = web.AppKey("app_name", str)


def json_error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "field": field}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


# Request ids: a random per-process prefix and a counter — unique, and no getrandom() per request.
_RID_PREFIX = secrets.token_hex(4)
_rid_counter = itertools.count(1)
# Counter children by (app, status class): labels() looks them up under a lock on every call.
_http_counted: dict[tuple[str, int], Any] = {}


def _count(app_name: str, status: int) -> None:
    key = (app_name, status // 100)
    child = _http_counted.get(key)
    if child is None:
        child = _http_counted[key] = metrics.http_requests.labels(app_name, f"{status // 100}xx")
    child.inc()


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (from X-Request-Id when sane), timing, metrics, and errors as clear JSON."""
    incoming = request.headers.get("X-Request-Id", "")
    if incoming and incoming.isascii() and len(incoming) <= 64:
        rid = incoming
    else:
        rid = f"{_RID_PREFIX}{next(_rid_counter):08x}"
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = json_error(413, "too_large", "the request body is larger than allowed")
        except web.HTTPException as exc:
            if exc.status >= 400 and not exc.text:
                response = json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
            else:
                raise
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            response = json_error(500, "internal", "internal error; it has been logged")
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        _count(request.app[APP_NAME_KEY], status)
        if log.isEnabledFor(logging.DEBUG):
            ms = round((time.perf_counter() - started) * 1000, 2)
            extra = {"method": request.method, "path": request.path, "status": status, "ms": ms}
            log.debug("http", extra=extra)
        request_id.reset(token)


def public_app(redis: aioredis.Redis, max_body_bytes: int) -> web.Application:
    """Webhooks only. Channel routes are added by gateway.webhooks."""
    app = web.Application(middlewares=[request_context], client_max_size=max_body_bytes)
    app[APP_NAME_KEY] = "public"
    app[REDIS_KEY] = redis
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS_KEY].ping()
    except (aioredis.RedisError, OSError) as exc:
        return web.json_response({"status": "unavailable", "redis": str(exc)}, status=503)
    return web.json_response({"status": "ready", "redis": "ok"})


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")


def staff_app(redis: aioredis.Redis, max_body_bytes: int) -> web.Application:
    """Health, readiness, metrics; the staff API routes are added by gateway.staff."""
    app = web.Application(middlewares=[request_context], client_max_size=max_body_bytes)
    app[APP_NAME_KEY] = "staff"
    app[REDIS_KEY] = redis
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
