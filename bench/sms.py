"""Benchmark of the SMS webhook path (not a test): signed Twilio inbound webhooks through real HTTP
to one ``sulai serve --sandbox`` process on its embedded Valkey, with a bare aiohttp hello-world
endpoint (a separate process) measured in the same run by the same client at the same concurrency.

Each of the concurrent senders is a distinct number and texts like a citizen filing tickets one
after another: a report with its address (the engine answers with the summary to confirm), then
"1" (a ticket is filed and its id answered inline as TwiML). So half the messages file a ticket.
The per-number inbound flood limit is raised in the bench config, so this measures throughput,
not the limiter. Forms and signatures (HMAC-SHA1 over the public URL and every parameter) are
computed before the clock starts, so the client spends its time on HTTP only.

Usage: ``python bench/sms.py [--senders 50] [--seconds 8]``. Loopback only, bounded (~40 s).
Last line: ``RESULT name=sms msgs_per_s=… p50_ms=… p99_ms=… baseline_rps=… ratio=…``.
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
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import aiohttp  # noqa: E402

from bench.common import percentile, start_hello  # noqa: E402
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER  # noqa: E402
from channels.sms.simulator import sign, twilio_form  # noqa: E402
from gateway.testing import start_serve  # noqa: E402
from gateway.valkey_server import free_port  # noqa: E402

PATH = "/sms/twilio"
REPORTS = ("人民路{n}号路灯不亮三天了", "幸福家园小区{n}栋门口垃圾没人清理", "睢城街道{n}号井盖缺失")

Request = tuple[bytes, str]  # (form body, X-Twilio-Signature)


def prepare(public_base: str, senders: int, per_sender: int) -> list[list[Request]]:
    """Signed requests for each sender, in the order the sender texts them."""
    url = public_base + PATH
    plan: list[list[Request]] = []
    for s in range(senders):
        number = f"+86139{s:08d}"
        requests: list[Request] = []
        for i in range(per_sender):
            body = REPORTS[(i // 2) % len(REPORTS)].format(n=i // 2 + 1) if i % 2 == 0 else "1"
            form = twilio_form(SANDBOX_ACCOUNT_SID, number, SANDBOX_NUMBER, body)
            requests.append((urlencode(form).encode(), sign(SANDBOX_AUTH_TOKEN, url, form)))
        plan.append(requests)
    return plan


async def drive(target: str, plan: list[list[Request]], seconds: float) -> tuple[int, list[float], int]:
    """Each sender posts its requests one after another until ``seconds`` have passed.
    Returns (answered with 200, latencies in s, failures)."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=len(plan), force_close=False)

    async def sender(session: aiohttp.ClientSession, requests: list[Request]) -> None:
        nonlocal failures
        for body, signature in requests:
            if time.perf_counter() >= stop_at:
                return
            headers = {
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
            }
            started = time.perf_counter()
            async with session.post(target, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session, r) for r in plan))
    return len(latencies), latencies, failures


async def measure(
    target: str, plan: list[list[Request]], warm: list[list[Request]], seconds: float
) -> tuple[float, float, float, int]:
    await drive(target, warm, 1.5)  # connections open, code paths and Valkey warm
    started = time.perf_counter()
    count, latencies, failures = await drive(target, plan, seconds)
    elapsed = time.perf_counter() - started
    return count / elapsed, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--per-sender", type=int, default=0, help="requests prepared per sender")
    args = parser.parse_args()
    per_sender = args.per_sender or max(100, int(args.seconds * 200))

    with tempfile.TemporaryDirectory(prefix="sulai-bench-sms-") as tmp:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        config: dict[str, object] = {
            "http": {"public_port": port, "public_base_url": public},
            "sms": {"inbound_limit": 1_000_000},
            "logging": {"level": "WARNING"},
        }
        serve = start_serve(Path(tmp) / "data", config, extra_args=("--sandbox",))
        hello_port = free_port()
        hello = start_hello(hello_port)
        try:
            warm = prepare(public, args.senders, 20)
            plan = prepare(public, args.senders, per_sender)
            base_warm = prepare(f"http://127.0.0.1:{hello_port}", args.senders, 20)
            rate, p50, p99, failures = asyncio.run(measure(public + PATH, plan, warm, args.seconds))
            base_plan = prepare(f"http://127.0.0.1:{hello_port}", args.senders, per_sender)
            hello_url = f"http://127.0.0.1:{hello_port}{PATH}"
            base_rate, base_p50, base_p99, _ = asyncio.run(
                measure(hello_url, base_plan, base_warm, min(args.seconds, 5.0))
            )
        finally:
            hello.terminate()
            hello.wait(timeout=10)
            serve.terminate()
    print(f"sms gateway: {rate:.0f} msgs/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, non-200: {failures}")
    print(f"bare aiohttp: {base_rate:.0f} req/s, p50 {base_p50:.2f} ms, p99 {base_p99:.2f} ms")
    print(f"senders: {args.senders}; target >= 3000 msgs/s with p99 <= 50 ms")
    print(
        f"RESULT name=sms msgs_per_s={rate:.1f} p50_ms={p50:.2f} p99_ms={p99:.2f} "
        f"baseline_rps={base_rate:.1f} ratio={rate / base_rate:.3f}"
    )


if __name__ == "__main__":
    main()
