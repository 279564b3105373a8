"""Fixtures for the staff API tests: the real staff app on a loopback test server, the real
Valkey fixture, one token per role, two units, and a clock the test moves."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from channels.base import Outbound
from gateway.app import staff_app
from gateway.staff import StaffContext, setup_staff_api
from gateway.staff.auth import Role, Staff, create_staff
from store import keys
from store.outbox_codec import Envelope

ZONE = ZoneInfo("Asia/Shanghai")
# 10:00 local on a weekday: outside quiet hours unless a test moves the clock.
MORNING = dt.datetime(2026, 11, 25, 10, 0, tzinfo=ZONE).timestamp()


@dataclass
class Clock:
    now: float = MORNING

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    ctx: StaffContext
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)
    staff: dict[str, Staff] = field(default_factory=dict)
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    def headers(self, who: str, idem: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.tokens[who]}"}
        h["Idempotency-Key"] = idem if idem is not None else f"k{next(self._keys)}"
        return h

    async def call(
        self, who: str, method: str, path: str, body: Any = None, idem: str | None = None
    ) -> tuple[int, Any]:
        resp = await self.client.request(method, "/api/v1" + path, json=body, headers=self.headers(who, idem))
        data = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, data

    async def ok(self, who: str, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(who, method, path, body)
        assert status < 300, (status, data)
        return data

    async def new_ticket(self, phone: str = "13812345678", **extra: Any) -> str:
        data = await self.ok(
            "dispatcher",
            "POST",
            "/tickets",
            {"description": "路灯坏了", "location": "人民路", "phone": phone, **extra},
        )
        return str(data["id"])

    async def assigned_ticket(self, unit: str = "城管局") -> str:
        tid = await self.new_ticket()
        await self.ok("dispatcher", "POST", f"/tickets/{tid}/accept", {})
        await self.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": unit})
        return tid


async def outbox_entries(api: Api) -> list[Outbound]:
    """The outbound messages queued in the tenant's outbox stream, oldest first."""
    rows: Any = await api.ctx.redis.xrange(keys.outbox("default"))
    return [Envelope.from_json(fields[b"o"]).outbound for _, fields in rows]


ROLES_USED = {
    "admin": (Role.ADMIN, ""),
    "dispatcher": (Role.DISPATCHER, ""),
    "unit": (Role.UNIT, "城管局"),
    "unit2": (Role.UNIT, "住建局"),
    "supervisor": (Role.SUPERVISOR, ""),
    "gridworker": (Role.GRIDWORKER, ""),
    "viewer": (Role.VIEWER, ""),
}


@pytest.fixture
async def api(redis_client: aioredis.Redis) -> AsyncIterator[Api]:
    clock = Clock()
    ctx = StaffContext(redis=redis_client, clock=clock)
    app = staff_app(redis_client, 16 * 1024 * 1024)
    setup_staff_api(app, ctx)
    client = TestClient(TestServer(app))
    await client.start_server()
    result = Api(client=client, ctx=ctx, clock=clock)
    for who, (role, unit) in ROLES_USED.items():
        staff, token = await create_staff(redis_client, "default", who, role, unit, now=clock.now)
        result.tokens[who] = token
        result.staff[who] = staff
    for unit in ("城管局", "住建局"):
        await redis_client.hset(keys.units("default"), unit, json.dumps({"name": unit}))
    try:
        yield result
    finally:
        await client.close()
