"""Two gateways sharing one Redis need an access token at the same moment: one fetch, both send.

Not the sandbox: both gateways are configured (``[wechat]``) against one loopback fake WeChat
started here, so its count of token fetches covers both. The fake's token endpoint is slowed
down so the second gateway asks while the first is still fetching.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from channels.base import Outbound, Purpose, wechat_address
from channels.wechat.fake import FakeWeChat, start_fake
from gateway.config import settings_from_mapping
from gateway.testing import running_gateway
from store import keys
from store.outbox import GROUP, Outbox

TENANT = "default"
APPID, SECRET = "wxshared00000000", "shared-secret"
PUSHES = 8


def settings(data_dir: Path, valkey_url: str, api_base: str) -> Any:
    account = {
        "name": "city",
        "account_id": "gh_city",
        "appid": APPID,
        "secret": SECRET,
        "token": "city-token",
        "mode": "plaintext",
    }
    template = {
        "template_id": "TPL_STATUS",
        "fields": {"character_string1": "{ticket_id}", "thing2": "{text}"},
    }
    raw = {
        "data_dir": str(data_dir),
        "redis": {"url": valkey_url},
        # One entry per read, so both dispatchers hold work (and want a token) at once.
        "dispatcher": {"batch": 1},
        "wechat": {"api_base": api_base, "accounts": [account], "templates": {"status.accepted": template}},
    }
    return settings_from_mapping(raw, env={})


async def test_two_gateways_needing_a_token_at_once_fetch_it_once(
    tmp_path: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    fake = FakeWeChat({APPID: SECRET})
    fake.token_delay_s = 0.5
    runner, api_base = await start_fake(fake)
    worker = frozenset({"worker"})
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                gw = running_gateway(
                    settings(tmp_path / name, valkey_url, api_base), sandbox=False, roles=worker
                )
                await stack.enter_async_context(gw)
            pushes = [
                Outbound(
                    id=f"SN-251126-{n:04d}-0:1:status.accepted",
                    tenant=TENANT,
                    recipient=wechat_address(APPID, f"o_token_{n}"),
                    purpose=Purpose.STATUS,
                    key="status.accepted",
                    params={"ticket_id": f"SN-251126-{n:04d}-0"},
                    ticket_id=f"SN-251126-{n:04d}-0",
                )
                for n in range(PUSHES)
            ]
            await Outbox(redis_client).enqueue(TENANT, pushes)
            for _ in range(300):  # up to 15 s
                if len(fake.sent) >= PUSHES:
                    break
                await asyncio.sleep(0.05)

            assert sorted(s["body"]["touser"] for s in fake.sent) == sorted(
                f"o_token_{n}" for n in range(PUSHES)
            )
            assert fake.token_fetches[APPID] == 1
            # Both gateways' dispatchers took part (each read entries from the group).
            consumers = await redis_client.xinfo_consumers(keys.outbox(TENANT), GROUP)
            # "inactive" is -1 for a consumer that never got an entry (Valkey 8 XINFO CONSUMERS).
            active = [c for c in consumers if int(c.get("inactive", -1)) >= 0]
            assert len(active) == 2, consumers
            assert await redis_client.get(keys.access_token(TENANT, APPID)) is not None
    finally:
        await runner.cleanup()
