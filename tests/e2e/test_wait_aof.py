"""redis.wait_aof: a new ticket is acknowledged only after the AOF is fsynced on the server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from channels.wechat.settings import sandbox_settings
from channels.wechat.simulator import WeChatSimulator
from gateway.testing import ServeProcess

pytestmark = pytest.mark.slow


async def test_ticket_is_acknowledged_after_waitaof(
    serve_factory: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc = serve_factory({"redis": {"wait_aof": True}}, extra_args=("--sandbox",), data_dir=data_dir)
    account = sandbox_settings(data_dir, "http://unused").accounts[0]
    async with aiohttp.ClientSession() as session:
        sim = WeChatSimulator(
            proc.addresses["public"] + account.path,
            token=account.token,
            appid=account.appid,
            account_id=account.account_id,
            mode="plaintext",
            session=session,
        )
        await sim.push(
            sim.text("o_aof_citizen_01", "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678")
        )
        filed = await sim.push(sim.text("o_aof_citizen_01", "1"))
    assert filed.text is not None and "工单号" in filed.text
    # The server counted the WAITAOF the intake issued.
    import redis

    client = redis.Redis(unix_socket_path=str(data_dir / "valkey" / "valkey.sock"))
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    assert stats.get("cmdstat_waitaof", {}).get("calls", 0) >= 1
