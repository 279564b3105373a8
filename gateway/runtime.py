"""`sulai serve`: start every role in one asyncio process and stop it cleanly.

Order of start: data directory → Redis (embedded Valkey when no URL) → gateway components →
HTTP sites, SMTP listener, IMAP poller, dispatcher, scheduler. Order of stop (SIGTERM/SIGINT):
stop accepting (close listeners) → let in-flight turns finish → stop workers → close adapters
and Redis → stop the embedded server (a clean SHUTDOWN flushes the AOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web

from gateway.app import public_app, staff_app
from gateway.config import Settings
from gateway.logs import setup_logging
from gateway.valkey_server import EmbeddedValkey
from store import mux as store_mux

log = logging.getLogger(__name__)


def check_channel_settings(settings: Settings) -> None:
    """Parse every channel's section so a wrong value stops startup with its key named."""
    from gateway.components import parse_channel_settings

    parse_channel_settings(settings, sandbox=False)


async def start_redis(settings: Settings) -> tuple[aioredis.Redis, EmbeddedValkey | None]:
    embedded: EmbeddedValkey | None = None
    url = settings.redis.url
    if not url:
        embedded = EmbeddedValkey(settings.data_dir / "valkey")
        # Started from the main thread on purpose: PR_SET_PDEATHSIG fires when the *thread* that
        # forked the child exits, and an executor thread may exit long before the process does.
        # Nothing else runs on the loop yet, so the short blocking start costs nothing.
        url = embedded.start()
    client = aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
    await client.ping()
    return client, embedded


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # Port 0 (tests) binds a free port: read back which one.
    sockets = list(getattr(site._server, "sockets", None) or [])
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, f"http://{host}:{bound}"


async def serve(
    settings: Settings,
    roles: set[str],
    sandbox: bool = False,
    ready: Callable[[dict[str, str]], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    configure_logging: bool = True,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set). Returns the process exit code."""
    from gateway.components import Gateway

    if configure_logging:
        setup_logging(settings.logging.level, settings.logging.json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    redis, embedded = await start_redis(settings)
    # The hot-path scripts (a turn's read and apply, the WeChat nonce) share one multiplexed
    # connection instead of redis-py's per-command pool round (store/mux.py).
    store_mux.attach(redis)
    gateway: Gateway | None = None
    runners: list[web.AppRunner] = []
    try:
        gateway = await Gateway.create(settings, redis, sandbox=sandbox, clock=clock)
        addresses: dict[str, str] = {}
        if "web" in roles:
            app = public_app(redis, settings.http.max_body_bytes)
            gateway.install_public(app)
            runner, addresses["public"] = await start_site(
                app, settings.http.public_host, settings.http.public_port
            )
            runners.append(runner)
        if "staff" in roles:
            sapp = staff_app(redis, settings.http.max_body_bytes)
            gateway.install_staff(sapp)
            runner, addresses["staff"] = await start_site(
                sapp, settings.http.staff_host, settings.http.staff_port
            )
            runners.append(runner)
        addresses.update(await gateway.start_roles(roles))
        addresses["redis"] = "embedded valkey" if embedded else "external"
        # What startup built lives as long as the process: keep it out of the collector's
        # generations, so full collections under load walk only the objects of live requests.
        gc.freeze()
        for role, where in addresses.items():
            print(f"sulai: {role:<8} {where}", flush=True)
        if ready is not None:
            result = ready(addresses)
            if result is not None:
                await result
        await stop.wait()
        log.info("stopping")
    finally:
        # Stop accepting first, then let in-flight work finish, then release resources.
        for runner in runners:
            await runner.cleanup()
        if gateway is not None:
            await gateway.close()
        await store_mux.detach(redis)
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        log.info("stopped")
    return 0
