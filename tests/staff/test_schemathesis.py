"""Property-based run of schemathesis against the served OpenAPI document: no input makes the
staff API answer 5xx. The app runs on a real loopback port in a thread with its own event loop
(schemathesis' client is synchronous), on the real Valkey fixture."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import hypothesis
import pytest
import redis.asyncio as aioredis
import requests
import schemathesis
from aiohttp import web

from gateway.app import staff_app
from gateway.staff import StaffContext, setup_staff_api
from gateway.staff.auth import create_staff
from store import keys


class Server:
    def __init__(self, valkey_url: str) -> None:
        self.valkey_url = valkey_url
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.base_url = ""
        self.token = ""
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        self.redis = aioredis.Redis.from_url(self.valkey_url)
        await self.redis.flushall()
        ctx = StaffContext(redis=self.redis)
        _, self.token = await create_staff(self.redis, "default", "fuzz", "admin", now=ctx.clock())
        await self.redis.hset(keys.units("default"), "城管局", '{"name": "城管局"}')
        app = staff_app(self.redis, 16 * 1024 * 1024)
        setup_staff_api(app, ctx)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.redis.aclose()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(valkey_url: str) -> Iterator[Server]:
    s = Server(valkey_url)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.timeout(240)
def test_no_input_causes_a_server_error(server: Server) -> None:
    with requests.Session() as session:
        doc = session.get(server.base_url + "/api/v1/openapi.json").json()
        # One real ticket so that id-taking routes also reach their handlers, not only the 404.
        created = session.post(
            server.base_url + "/api/v1/tickets",
            json={"description": "样例", "phone": "13812345678"},
            headers={"Authorization": f"Bearer {server.token}"},
        ).json()
        schema = schemathesis.openapi.from_dict(doc)
        auth = {"Authorization": f"Bearer {server.token}"}
        failures: list[str] = []
        statuses: set[int] = set()
        operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 27
        for op in operations:

            @hypothesis.settings(
                max_examples=25,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy())
            def run(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                if (
                    case.path_parameters
                    and "ticket_id" in case.path_parameters
                    and case.path_parameters["ticket_id"].startswith("0")
                ):
                    case.path_parameters["ticket_id"] = created["id"]
                resp = case.call(base_url=server.base_url, session=session, headers=auth)
                statuses.add(resp.status_code)
                if resp.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.body!r} -> {resp.status_code}"
                    )

            run()
        assert failures == []
        assert {200, 400, 404} <= statuses  # the run reached handlers, not only the auth wall
