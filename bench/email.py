"""Email intake throughput: SMTP deliveries/s into one gateway process, and IMAP ingest from Dovecot.

    .venv/bin/python bench/email.py [--clients 16] [--mails 2000] [--imap-mails 1000]

- reference: the same SMTP clients against a bare aiosmtpd server (answers 250, stores nothing),
  in its own process: what SMTP on this machine costs before any work of ours;
- SMTP: N concurrent clients, one connection each, mails of ~5 KB from distinct citizens with
  every detail a ticket needs. The listener answers 250 only after the intake filed the mail, so
  a mail's latency (MAIL FROM … 250 after DATA) is "until filed"; the ticket count is checked;
- IMAP: 1,000 such mails appended to a throwaway Dovecot first, then a gateway process with the
  poller started; timed from when it is ready until all are filed.

The gateway is the real `sulai serve` process (only the role measured) on a private Valkey; the
parent only starts, feeds and counts. Last line: ``RESULT name=email smtp_mails_per_s=… imap_mails_per_s=… p99_ms=…``.
"""

# `python bench/email.py` puts bench/ first on sys.path, where this very file would shadow the
# standard library's `email` package for every import below. Drop it before importing anything.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the project root: gateway, channels … and tests.dovecot

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from gateway.testing import ServeProcess, start_serve  # noqa: E402

HOTLINE = "hotline@sulai.test"
REQUEST = "东风路与建设路交叉口的路灯坏了三天，晚上很黑。地址：东风路18号门口。电话13812345678。"
FILLER = "补充说明：这一段路晚上没有灯，老人和孩子经过很不方便，希望尽快修好。" * 36  # ~5 KB encoded


def mail_bytes(i: int, tag: str) -> bytes:
    from channels.email.simulator import citizen_mail

    msg = citizen_mail(
        mail_from=f"citizen{i}.{tag}@example.com",
        to=HOTLINE,
        subject="路灯坏了",
        text=f"{REQUEST}\n\n{FILLER}",
    )
    return msg.as_bytes()


# --- the child processes -----------------------------------------------------------------------------


async def _child_reference() -> None:
    from aiosmtpd.smtp import SMTP

    class Accept:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Accept(), enable_SMTPUTF8=True), "127.0.0.1", 0)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    server.close()


class Child:
    """The reference SMTP server in its own process, like the gateway."""

    def __init__(self, mode: str) -> None:
        args = [sys.executable, os.path.abspath(__file__), "--child", mode]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise SystemExit(f"child {mode} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.started = time.perf_counter()

    def stop(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the parent ---------------------------------------------------------------------------------------


async def smtp_load(port: int, mails: list[bytes], clients: int) -> tuple[float, list[float]]:
    import aiosmtplib

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for m in mails:
        queue.put_nowait(m)
    latencies: list[float] = []

    async def client(n: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
        async with smtp:
            while not queue.empty():
                raw = queue.get_nowait()
                sender = (
                    raw.split(b"From: ", 1)[1].split(b"\r\n", 1)[0].decode() if b"From: " in raw else "a@b.c"
                )
                t0 = time.perf_counter()
                await smtp.sendmail(sender, [HOTLINE], raw)
                latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - start, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: less noisy than wall-clock rates on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


async def count_tickets(redis: Any) -> int:
    from store import keys

    return int(await redis.zcard(keys.index_created("default")))


def _serve(data_dir: Path, redis_url: str, imap: list[dict[str, Any]] | None, role: str) -> ServeProcess:
    """The real `sulai serve` (uvloop, shared script connection …) running only ``role``."""
    email: dict[str, Any] = {"addresses": [HOTLINE], "domain": "sulai.test"}
    if imap:
        email["imap"] = imap
    config: dict[str, Any] = {"redis": {"url": redis_url}, "tenant": {"quiet_hours": ""}, "email": email}
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_serve(data_dir, config, ("--role", role))


async def run(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    from imapclient import IMAPClient

    from gateway.valkey_server import EmbeddedValkey
    from tests.dovecot import PASSWORD, USER, Dovecot

    with tempfile.TemporaryDirectory(prefix="sulai-bench-email-") as tmp:
        root = Path(tmp)
        valkey = EmbeddedValkey(root / "valkey", appendonly=False)
        url = valkey.start()
        redis = aioredis.Redis.from_url(url)
        dovecot = Dovecot()
        dovecot.start()
        try:
            smtp_mails = [mail_bytes(i, "smtp") for i in range(args.mails)]
            size = sum(len(m) for m in smtp_mails) / len(smtp_mails)

            ref = Child("reference")
            ref_s, _ = await smtp_load(ref.port, smtp_mails, args.clients)
            ref.stop()
            ref_rate = len(smtp_mails) / ref_s
            print(f"reference: bare aiosmtpd {ref_rate:.0f} mails/s", flush=True)

            gw = _serve(root / "data", url, None, "smtp")
            smtp_port = int(gw.addresses["smtp"].rpartition(":")[2])
            cpu_before = cpu_seconds(gw.process.pid)
            smtp_s, latencies = await smtp_load(smtp_port, smtp_mails, args.clients)
            cpu_ms = (cpu_seconds(gw.process.pid) - cpu_before) * 1000 / len(smtp_mails)
            gw.terminate()
            filed = await count_tickets(redis)
            if filed != len(smtp_mails):
                raise SystemExit(f"SMTP: {filed} tickets filed for {len(smtp_mails)} mails")
            smtp_rate = len(smtp_mails) / smtp_s
            print(
                f"smtp: {len(smtp_mails)} mails of {size / 1024:.1f} KB from {args.clients} clients in {smtp_s:.2f}s "
                f"= {smtp_rate:.0f} mails/s (p50 {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, "
                f"p99 {p99(latencies) * 1000:.1f} ms), all filed; gateway CPU {cpu_ms:.2f} ms per mail",
                flush=True,
            )

            imap_mails = [mail_bytes(i, "imap") for i in range(args.imap_mails)]

            def fill() -> None:
                with IMAPClient("127.0.0.1", port=dovecot.port, ssl=False) as c:
                    c.login(USER, PASSWORD)
                    for m in imap_mails:
                        c.append("INBOX", m)

            await asyncio.to_thread(fill)
            box = {"name": "bench", "host": "127.0.0.1", "port": dovecot.port, "tls": False, "user": USER,
                   "password": PASSWORD, "poll_seconds": 0.2, "batch": 100}  # fmt: skip
            gw = _serve(root / "data", url, [box], "imap")
            started = time.perf_counter()
            target = filed + len(imap_mails)
            while await count_tickets(redis) < target:
                if time.perf_counter() - started > 600:
                    raise SystemExit("IMAP: not all mails filed within 600 s")
                await asyncio.sleep(0.02)
            imap_s = time.perf_counter() - started
            gw.terminate()
            imap_rate = len(imap_mails) / imap_s
            print(
                f"imap: {len(imap_mails)} mails fetched and filed in {imap_s:.2f}s = {imap_rate:.0f} mails/s",
                flush=True,
            )
            print(
                f"RESULT name=email smtp_mails_per_s={smtp_rate:.1f} imap_mails_per_s={imap_rate:.1f} "
                f"p99_ms={p99(latencies) * 1000:.1f} cpu_ms_per_mail={cpu_ms:.2f} ref_smtp_mails_per_s={ref_rate:.1f} "
                f"ratio={smtp_rate / ref_rate:.3f}"
            )
        finally:
            await redis.aclose()
            dovecot.remove()
            valkey.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--imap-mails", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the reference server's process
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child_reference())
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
