"""Benchmark of the WeChat webhook path (not a test): N concurrent simulated citizens push signed
text messages through real HTTP to one ``sulai serve --sandbox`` process on its embedded Valkey,
and a bare aiohttp hello-world endpoint (a separate process) is measured in the same run by the
same client at the same concurrency.

Each of the N concurrent slots is a citizen with their own openid, talking like one: a report
with its address and phone (the engine answers with the summary to confirm), "1" (a ticket is
filed, its id answered as the passive reply), then five follow-up texts appended to the ticket
as supplements; then the next citizen (a new openid) takes the slot. Mostly follow-ups, as on a
real account. Replies are counted as passive (an XML answer) or bare ``success`` acks (the slow
path); both are printed.

Plaintext pushes are measured first (the target), then safe-mode (AES-encrypted, msg_signature)
pushes from other citizens. Pushes are built, signed and encrypted before the clock starts (each
with its own MsgId and nonce, so the replay guard sees no reuse), so the client spends its time
on HTTP only. The client shares the machine's cores with the gateway and Valkey.

Usage: ``python bench/wechat.py [--citizens 50] [--seconds 8]``. Loopback only, bounded (~40 s).
Last line: ``RESULT name=wechat msgs_per_s=… p50_ms=… p99_ms=… safe_msgs_per_s=… baseline_rps=… ratio=…``.
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
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import aiohttp  # noqa: E402

from bench.common import percentile, start_hello  # noqa: E402
from channels.wechat.settings import Account, sandbox_settings  # noqa: E402
from channels.wechat.simulator import WeChatSimulator  # noqa: E402
from gateway.testing import start_serve  # noqa: E402
from gateway.valkey_server import free_port  # noqa: E402

REPORTS = ("人民路{n}号路灯不亮三天了", "幸福家园小区{n}栋门口垃圾没人清理", "睢城街道{n}号井盖缺失")
FOLLOW_UPS = (
    "补充一下，晚上十点以后整条路都是黑的",
    "刚才又去看了一次，还是没修",
    "附近老人孩子多，麻烦尽快处理",
    "请问大概什么时候能有人来看看",
    "谢谢，辛苦了",
)

Push = tuple[str, bytes]  # (query string, body)


def conversation(n: int) -> list[str]:
    """One citizen's conversation: report (with address and phone), confirm, follow-ups."""
    return [REPORTS[n % len(REPORTS)].format(n=n + 1) + "，电话13812345678", "1", *FOLLOW_UPS]


@dataclass
class Planner:
    sim: WeChatSimulator
    nonce: int = 0

    def plan(self, prefix: str, citizens: int, per_citizen: int, mode: str) -> list[list[Push]]:
        self.sim.mode = mode
        plan = []
        for c in range(citizens):
            pushes: list[Push] = []
            n = 0
            while len(pushes) < per_citizen:
                # When one citizen's conversation is over, the next citizen takes the slot.
                openid = f"o{prefix}{c:04d}x{n:05d}bench"
                for text in conversation(n):
                    self.nonce += 1
                    query, body = self.sim.sign(self.sim.text(openid, text), nonce=str(self.nonce))
                    pushes.append((urlencode(query), body))
                n += 1
            plan.append(pushes[:per_citizen])
        return plan


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    passive: int = 0
    acked: int = 0
    failures: int = 0


async def drive(url: str, plan: list[list[Push]], seconds: float) -> Tally:
    """Each citizen pushes its messages one after another (WeChat waits for each answer)."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds
    headers = {"Content-Type": "text/xml"}

    async def citizen(session: aiohttp.ClientSession, pushes: list[Push]) -> None:
        for query, body in pushes:
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            async with session.post(f"{url}?{query}", data=body, headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
            elapsed = time.perf_counter() - started
            if status != 200:
                tally.failures += 1
                continue
            tally.latencies.append(elapsed)
            if answer.startswith(b"<xml>"):
                tally.passive += 1
            else:
                tally.acked += 1

    connector = aiohttp.TCPConnector(limit=len(plan))
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(citizen(session, p) for p in plan))
    return tally


@dataclass
class Figures:
    rate: float
    p50_ms: float
    p99_ms: float
    tally: Tally


async def measure(url: str, warm: list[list[Push]], plan: list[list[Push]], seconds: float) -> Figures:
    await drive(url, warm, 1.0)  # connections open, code paths and Valkey warm
    started = time.perf_counter()
    tally = await drive(url, plan, seconds)
    elapsed = time.perf_counter() - started
    lat = tally.latencies
    return Figures(len(lat) / elapsed, percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3, tally)


def report(name: str, f: Figures) -> None:
    t = f.tally
    print(
        f"{name}: {f.rate:.0f} msgs/s, p50 {f.p50_ms:.2f} ms, p99 {f.p99_ms:.2f} ms; "
        f"passive replies {t.passive}, bare acks {t.acked}, non-200 {t.failures}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--per-citizen", type=int, default=0, help="pushes prepared per citizen")
    args = parser.parse_args()
    per_citizen = args.per_citizen or max(80, int(args.seconds * 120))
    safe_seconds = min(args.seconds, 5.0)
    base_seconds = min(args.seconds, 5.0)

    account: Account = sandbox_settings(Path("."), "http://unused").accounts[0]
    with tempfile.TemporaryDirectory(prefix="sulai-bench-wechat-") as tmp:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        config: dict[str, object] = {
            "http": {"public_port": port, "public_base_url": public},
            "logging": {"level": "WARNING"},
        }
        serve = start_serve(Path(tmp) / "data", config, extra_args=("--sandbox",))
        hello_port = free_port()
        hello = start_hello(hello_port)
        try:
            url = public + account.path
            sim = WeChatSimulator(
                url,
                token=account.token,
                appid=account.appid,
                account_id=account.account_id,
                encoding_aes_key=account.encoding_aes_key,
            )
            planner = Planner(sim)
            warm = planner.plan("w", args.citizens, 12, "plaintext")
            plain = planner.plan("p", args.citizens, per_citizen, "plaintext")
            safe_warm = planner.plan("v", args.citizens, 12, "safe")
            safe = planner.plan("s", args.citizens, int(per_citizen * safe_seconds / args.seconds), "safe")
            plain_f = asyncio.run(measure(url, warm, plain, args.seconds))
            safe_f = asyncio.run(measure(url, safe_warm, safe, safe_seconds))
            hello_url = f"http://127.0.0.1:{hello_port}{account.path}"
            base_f = asyncio.run(measure(hello_url, warm, plain, base_seconds))
        finally:
            hello.terminate()
            hello.wait(timeout=10)
            serve.terminate()
    report("wechat plaintext", plain_f)
    report("wechat safe mode", safe_f)
    print(f"bare aiohttp: {base_f.rate:.0f} req/s, p50 {base_f.p50_ms:.2f} ms, p99 {base_f.p99_ms:.2f} ms")
    print(f"citizens: {args.citizens}; target >= 3000 plaintext msgs/s with p99 <= 50 ms, ratio >= 0.10")
    print(
        f"RESULT name=wechat msgs_per_s={plain_f.rate:.1f} p50_ms={plain_f.p50_ms:.2f} "
        f"p99_ms={plain_f.p99_ms:.2f} safe_msgs_per_s={safe_f.rate:.1f} "
        f"baseline_rps={base_f.rate:.1f} ratio={plain_f.rate / base_f.rate:.3f}"
    )


if __name__ == "__main__":
    main()
