"""Crash safety of the whole process: tickets acknowledged before a SIGKILL of `serve` are there
after a restart, and a provider's retry after the restart files nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from channels.wechat.settings import sandbox_settings
from channels.wechat.simulator import WeChatSimulator
from gateway.testing import ServeProcess
from store.ticketid import find_ticket_ids

pytestmark = pytest.mark.slow

DIALOGUE = "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678"


async def _file_ticket(sim: WeChatSimulator, openid: str) -> tuple[str, str]:
    first = await sim.push(sim.text(openid, DIALOGUE))
    assert first.text and "确认" in first.text
    confirm_xml = sim.text(openid, "1")
    filed = await sim.push(confirm_xml)
    assert filed.text is not None
    ids = [i for i in find_ticket_ids(filed.text) if isinstance(i, str)]
    assert len(ids) == 1, filed.text
    return ids[0], confirm_xml


def _simulator(proc: ServeProcess, session: aiohttp.ClientSession, data_dir: Path) -> WeChatSimulator:
    account = sandbox_settings(data_dir, "http://unused").accounts[0]
    return WeChatSimulator(
        proc.addresses["public"] + account.path,
        token=account.token,
        appid=account.appid,
        account_id=account.account_id,
        encoding_aes_key=account.encoding_aes_key,
        mode="plaintext",
        session=session,
    )


async def test_acknowledged_tickets_survive_sigkill_and_retries_do_not_duplicate(
    serve_factory: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc = serve_factory(extra_args=("--sandbox",), data_dir=data_dir)
    async with aiohttp.ClientSession() as session:
        sim = _simulator(proc, session, data_dir)
        filed = [await _file_ticket(sim, f"o_citizen_{i:04d}") for i in range(5)]
    proc.kill()

    again = serve_factory(extra_args=("--sandbox",), data_dir=data_dir)
    async with aiohttp.ClientSession() as session:
        sim = _simulator(again, session, data_dir)
        for i, (ticket_id, confirm_xml) in enumerate(filed):
            # The citizen can query it: the ticket is there after the crash.
            status = await sim.push(sim.text(f"o_citizen_{i:04d}", f"查询 {ticket_id}"))
            assert status.text and ticket_id in status.text
            # WeChat re-delivers the confirming message (same MsgId): the same answer, no new ticket.
            replay = await sim.push(confirm_xml)
            assert replay.text and ticket_id in replay.text
        listing = await sim.push(sim.text("o_citizen_0000", "查询"))
        assert listing.text is not None
        assert [i for i in find_ticket_ids(listing.text) if isinstance(i, str)] == [filed[0][0]]
