"""The sandbox gateway in-process: a WeChat citizen files a ticket and gets the id inline."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from channels.wechat.settings import sandbox_settings
from channels.wechat.simulator import WeChatSimulator
from gateway.config import settings_from_mapping
from gateway.testing import running_gateway
from store.ticketid import parse_ticket_id


async def test_a_wechat_citizen_files_a_ticket_in_the_sandbox(
    data_dir: Path, valkey_url: str, redis_client: object
) -> None:
    settings = settings_from_mapping({"data_dir": str(data_dir), "redis": {"url": valkey_url}}, env={})
    account = sandbox_settings(data_dir, "http://unused").accounts[0]
    async with running_gateway(settings) as addresses, aiohttp.ClientSession() as session:
        sim = WeChatSimulator(
            addresses["public"] + account.path,
            token=account.token,
            appid=account.appid,
            account_id=account.account_id,
            encoding_aes_key=account.encoding_aes_key,
            mode="safe",
            session=session,
        )
        first = await sim.push(
            sim.text("o_citizen_0001", "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678")
        )
        assert first.text is not None and "回复 1 确认提交" in first.text
        filed = await sim.push(sim.text("o_citizen_0001", "1"))
        assert filed.text is not None
        token = filed.text.split("工单号")[1].split("，")[0].strip()
        assert parse_ticket_id(token) == token
