"""Outbound webhooks end to end: a government system subscribed to ticket events hears, signed,
about a ticket a citizen files on WeChat — a citizen-side write, not only staff actions."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from channels.wechat.settings import sandbox_settings
from channels.wechat.simulator import WeChatSimulator
from gateway.config import settings_from_mapping
from gateway.staff.auth import Role, create_staff
from gateway.staff.webhooks_out import sign
from gateway.testing import running_gateway
from store.ticketid import find_ticket_ids


async def test_a_subscriber_receives_the_signed_created_event(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = asyncio.Event()

    async def receiver(request: web.Request) -> web.Response:
        received.append(({k: v for k, v in request.headers.items()}, await request.read()))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/events", receiver)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    _, token = await create_staff(redis_client, "default", "赵六", Role.ADMIN, "", now=time.time())
    settings = settings_from_mapping(
        {"data_dir": str(data_dir), "redis": {"url": valkey_url}, "webhooks": {"allow_private": True}}, env={}
    )
    account = sandbox_settings(data_dir, "http://unused").accounts[0]
    try:
        async with running_gateway(settings) as addresses, aiohttp.ClientSession() as session:
            auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "sub-1"}
            async with session.post(
                addresses["staff"] + "/api/v1/webhooks",
                json={"url": f"http://127.0.0.1:{port}/events"},
                headers=auth,
            ) as response:
                assert response.status == 201, await response.text()
                secret = (await response.json())["secret"]
            sim = WeChatSimulator(
                addresses["public"] + account.path,
                token=account.token,
                appid=account.appid,
                account_id=account.account_id,
                mode="plaintext",
                session=session,
            )
            await sim.push(
                sim.text(
                    "o_webhook_citizen", "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678"
                )
            )
            filed = await sim.push(sim.text("o_webhook_citizen", "1"))
            assert filed.text is not None
            [ticket_id] = [t for t in find_ticket_ids(filed.text) if isinstance(t, str)]
            await asyncio.wait_for(arrived.wait(), timeout=15)
    finally:
        await runner.cleanup()
    headers, body = received[0]
    event = json.loads(body)
    assert event["ticket_id"] == ticket_id and event["event"]["kind"] == "created"
    assert event["event"]["actor"] == "citizen:wechat:wxsandbox000000000:o_webhook_citizen"
    timestamp = int(headers["X-Sulai-Timestamp"])
    assert headers["X-Sulai-Signature"] == sign(secret, timestamp, body)
