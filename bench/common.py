"""What the HTTP benchmarks share: the bare aiohttp reference endpoint, waiting for a port,
percentiles."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

# The same-machine reference: an aiohttp app that answers every POST with a fixed body.
HELLO = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def hello(request):
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def start_hello(port: int) -> subprocess.Popen[bytes]:
    """The reference endpoint in its own process, like the gateway; ready when this returns."""
    process = subprocess.Popen([sys.executable, "-c", HELLO, str(port)])
    wait_port(port)
    return process


def wait_port(port: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
