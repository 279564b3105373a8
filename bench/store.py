"""Benchmark of the case store (not a test): ticket-creating conversation turns per second, and
the Redis round trips per turn, on a private embedded Valkey (AOF on, as `sulai serve` runs it).

Round trips are counted at the connection: every ``send_packed_command`` is one request written
to the socket (a pipeline is one; an EVALSHA is one; a NOSCRIPT fallback to EVAL would count two).

Usage: ``python bench/store.py [--turns 5000] [--concurrency 50]``. Last line:
``RESULT name=store tickets_per_s=… round_trips_per_turn=… round_trips_per_ticket_turn=…``.
"""

from __future__ import annotations

# `python bench/<name>.py` puts bench/ first on sys.path, where bench/email.py would shadow the
# standard library's `email` and bench/store.py our `store` package. Drop it and put the project
# root first, before anything else is imported; `python -m bench.<name>` works the same way.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402
from redis.asyncio.connection import Connection, ConnectionPool, UnixDomainSocketConnection  # noqa: E402

from channels.base import Outbound, Purpose  # noqa: E402
from gateway.valkey_server import EmbeddedValkey  # noqa: E402
from store.apply import TICKET_ID_PLACEHOLDER  # noqa: E402
from store.casestore import CaseStore  # noqa: E402
from store.model import NewTicket  # noqa: E402
from store.turns import ApplyOutcome, Turns, TurnWrite  # noqa: E402

SENT = {"n": 0}


class CountingUnix(UnixDomainSocketConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SENT["n"] += 1
        await super().send_packed_command(command, check_health)


class CountingTcp(Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SENT["n"] += 1
        await super().send_packed_command(command, check_health)


def client(url: str) -> aioredis.Redis:
    if url.startswith("unix://"):
        path = url[len("unix://") :].split("?")[0]
        pool = ConnectionPool(connection_class=CountingUnix, path=path, max_connections=200)
    else:
        host_port = url.split("//")[1].split("/")[0]
        host, port = host_port.split(":")
        pool = ConnectionPool(connection_class=CountingTcp, host=host, port=int(port), max_connections=200)
    return aioredis.Redis(connection_pool=pool)


async def one_turn(turns: Turns, i: int, file_ticket: bool) -> None:
    address = f"wechat:wxbench:o{i}"
    ext = f"msg-{i}-{file_ticket}"
    # The read intake does: state, replay mark, in-flight lock and the tickets the state names.
    loaded = await turns.read_turn("default", address, ext, lock_token="bench", never=[TICKET_ID_PLACEHOLDER])
    assert loaded.locked and loaded.stored_reply is None
    ph = TICKET_ID_PLACEHOLDER
    tw = TurnWrite(
        tenant="default",
        address=address,
        expected_version=loaded.version,
        new_state=json.dumps({"step": "filed" if file_ticket else "asking", "ticket": ph}).encode(),
        external_id=ext,
        stored_reply=json.dumps({"texts": [f"已受理，工单号 {ph}"]}, ensure_ascii=False).encode(),
        new_ticket=NewTicket(
            channel="wechat",
            citizen=address,
            description="我家门口的路灯坏了三天了",
            location_text="睢城街道人民路88号",
            phone="+8613812345678",
        )
        if file_ticket
        else None,
        outbox=[
            Outbound(
                id=f"created:{ph}",
                tenant="default",
                recipient=address,
                purpose=Purpose.TICKET_CREATED,
                key="ticket.created",
                params={"id": ph},
                ticket_id=ph,
            )
        ]
        if file_ticket
        else [],
    )
    result = await turns.apply_turn(tw)
    assert result.outcome == ApplyOutcome.APPLIED, result


async def run(url: str, n: int, concurrency: int) -> str:
    r = client(url)
    turns = Turns(CaseStore(r))
    await r.ping()
    await one_turn(turns, -1, True)  # loads the script (the first EVALSHA may fall back to EVAL)

    before = SENT["n"]
    for i in range(200):
        await one_turn(turns, i, True)
    rt_ticket = (SENT["n"] - before) / 200
    before = SENT["n"]
    for i in range(200):
        await one_turn(turns, 10_000 + i, False)
    rt_turn = (SENT["n"] - before) / 200

    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await one_turn(turns, 100_000 + i, True)

    t0 = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    count = await r.zcard("sulai:{default}:v1:idx:created")
    await r.aclose()
    rate = n / elapsed
    print(f"ticket-creating turns: {n} in {elapsed:.2f} s at concurrency {concurrency} = {rate:.0f}/s")
    print(f"tickets in the store: {count}")
    print(f"round trips per ticket-creating turn (read script + apply): {rt_ticket:.2f}")
    print(f"round trips per turn without a ticket: {rt_turn:.2f}")
    return (
        f"RESULT name=store tickets_per_s={rate:.0f} round_trips_per_turn={rt_turn:.2f} "
        f"round_trips_per_ticket_turn={rt_ticket:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sulai-bench-") as d:
        server = EmbeddedValkey(Path(d), appendonly=True)
        url = server.start()
        try:
            line = asyncio.run(run(url, args.turns, args.concurrency))
        finally:
            server.stop()
    print(line)


if __name__ == "__main__":
    main()
