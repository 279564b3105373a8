"""The route table machinery: one :class:`RouteSpec` per endpoint, one wrapper for all of them.

The wrapper does, in order, for every route: JSON errors, authentication (401), the role check
(403), query and body validation against the declared fields, and Idempotency-Key handling for
mutating routes. Handlers receive a validated :class:`Call` and return ``(status, body)``. The
OpenAPI document is generated from the same specs (``openapi.py``).

An ``atomic`` route writes the Idempotency-Key mark inside its own store write: its handler gets
``call.idem`` and returns the exact stored response (a ``web.Response``) when it wrote the mark,
or a plain ``(status, body)`` when it changed nothing (then the wrapper remembers the answer).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from gateway.staff import access, idempotency
from gateway.staff.auth import Staff, authenticate
from gateway.staff.context import StaffContext
from gateway.staff.errors import MAX_JSON_BODY, ApiError, Field, check_fields, check_query, read_json

API = "/api/v1"


@dataclass(frozen=True, slots=True)
class Call:
    staff: Staff
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    idem: idempotency.Mark | None = None  # set for atomic routes called with an Idempotency-Key


Result = tuple[int, Any] | web.StreamResponse
Handler = Callable[[StaffContext, Call], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str  # under /api/v1, aiohttp syntax: /tickets/{ticket_id}
    name: str  # operationId
    action: str  # access.ACTIONS
    handler: Handler
    summary: str
    body: Sequence[Field] | None = None
    query: Sequence[Field] = ()
    ok_status: int = 200
    max_body: int = MAX_JSON_BODY
    binary: bool = False  # answers bytes, not JSON
    object_level: bool = False  # the route reads a ticket: unknown or not yours → 404
    atomic: bool = False  # the handler writes the Idempotency-Key mark with its action
    tags: tuple[str, ...] = field(default=("tickets",))

    @property
    def mutating(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

    @property
    def full_path(self) -> str:
        return API + self.path


def dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


def wrap(ctx: StaffContext, spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            return await _serve(ctx, spec, request)
        except ApiError as exc:
            return exc.response()

    return endpoint


async def _serve(ctx: StaffContext, spec: RouteSpec, request: web.Request) -> web.StreamResponse:
    staff = await authenticate(ctx.redis, ctx.tid, request.headers.get("Authorization"))
    if staff is None:
        resp = ApiError(401, "unauthorized", "a valid bearer token is required").response()
        resp.headers["WWW-Authenticate"] = 'Bearer realm="sulai-staff"'
        return resp
    if not access.allowed(staff, spec.action):
        raise ApiError(403, "forbidden", f"role {staff.role} may not {spec.action}")
    query = check_query(spec.query, request)
    key = idempotency.check_key(request.headers.get(idempotency.HEADER)) if spec.mutating else None
    raw_body = b""
    body: dict[str, Any] = {}
    if spec.body is not None:
        body = await read_json(request, spec.max_body)
        raw_body = dumps(body).encode()
        body = check_fields(spec.body, body)
    elif await request.content.read(1):
        raise ApiError(400, "unexpected_body", "this route takes no body")
    call = Call(staff=staff, path=dict(request.match_info), query=query, body=body)

    async def run() -> web.Response:
        result = await spec.handler(ctx, call)
        if isinstance(result, web.StreamResponse):
            return result  # type: ignore[return-value]
        status, payload = result
        return _json(status, payload)

    if key is None:
        return await run()
    fp = idempotency.fingerprint(request.method, request.path, raw_body)
    ext = idempotency.external_id(staff.id, key)
    if not spec.atomic:
        return await idempotency.run_once(ctx.redis, ctx.tid, ext, fp, run)
    marked_call = replace(call, idem=idempotency.Mark(ext, fp))

    async def run_marked() -> tuple[web.Response, bool]:
        result = await spec.handler(ctx, marked_call)
        if isinstance(result, web.Response):
            return result, True
        assert isinstance(result, tuple), "atomic routes answer JSON"
        return _json(*result), False

    return await idempotency.run_atomic(ctx.redis, ctx.tid, ext, fp, run_marked)


def install(app: web.Application, ctx: StaffContext, specs: Sequence[RouteSpec]) -> None:
    for spec in specs:
        app.router.add_route(spec.method, spec.full_path, wrap(ctx, spec), name=spec.name)
