"""Helpers for end-to-end tests and benchmarks: run a real `sulai serve` process on free ports.

Shipped in the package (like aiohttp.test_utils) so tests, benchmarks and channel packages share
one way of starting the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.valkey_server import free_port


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_table(name: str, values: dict[str, object], lines: list[str]) -> None:
    """Scalars first, then sub-tables and arrays of tables, so the file reads back as written."""
    lines += [
        f"{k} = {_toml_value(v)}"
        for k, v in values.items()
        if not isinstance(v, dict) and not _is_table_array(v)
    ]
    for key, value in values.items():
        full = f"{name}.{key}" if name else key
        if isinstance(value, dict):
            lines.append(f"\n[{full}]")
            _toml_table(full, value, lines)
        elif _is_table_array(value):
            for item in value:  # type: ignore[attr-defined]
                lines.append(f"\n[[{full}]]")
                _toml_table(full, item, lines)


def write_toml(path: Path, config: dict[str, object]) -> Path:
    """A small TOML writer for test and benchmark configs (scalars, lists, tables, arrays of tables)."""
    lines: list[str] = []
    _toml_table("", config, lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class ServeProcess:
    """A running `sulai serve`; ``addresses`` maps role -> URL as printed by serve."""

    process: subprocess.Popen[str]
    addresses: dict[str, str]
    data_dir: Path
    config_path: Path

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def start_serve(
    data_dir: Path,
    config: dict[str, object] | None = None,
    extra_args: tuple[str, ...] = (),
    wait_s: float = 30.0,
) -> ServeProcess:
    """Start `sulai serve` on free ports (port 0) and wait until it prints its addresses."""
    base: dict[str, object] = {
        "data_dir": str(data_dir),
        "http": {"public_port": 0, "staff_port": 0},
        "smtp": {"port": 0},
        "logging": {"level": "WARNING"},
    }
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    config_path = write_toml(data_dir.parent / f"{data_dir.name}-config.toml", base)
    exe = Path(sys.executable).parent / "sulai"
    process = subprocess.Popen(
        [str(exe), "serve", "--config", str(config_path), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + wait_s
    assert process.stdout is not None
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("sulai: "):
            role, _, where = line[len("sulai: ") :].strip().partition(" ")
            addresses[role] = where.strip()
            if role == "redis":
                return ServeProcess(process, addresses, data_dir, config_path)
    process.kill()
    process.wait()
    process.stdout.close()
    raise RuntimeError("sulai serve did not start:\n" + "".join(seen))


class TestClock:
    """A clock tests move by hand: ``clock.advance(3 * 86400)``."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings,
    *,
    sandbox: bool = True,
    clock: Callable[[], float] = time.time,
    roles: frozenset[str] = frozenset({"web", "staff", "smtp", "imap", "worker"}),
) -> AsyncIterator[dict[str, str]]:
    """Run `serve` inside the test's event loop on free loopback ports; yields the addresses.

    The public port is chosen up front so ``public_base_url`` (what Twilio signs) is right.
    ``redis.url`` may point at the test server; otherwise an embedded Valkey is started.
    """
    from gateway.runtime import serve

    public = free_port()
    settings = replace(
        settings,
        http=replace(
            settings.http,
            public_port=public,
            staff_port=0,
            public_base_url=f"http://127.0.0.1:{public}",
        ),
        smtp=replace(settings.smtp, port=0),
    )
    stop = asyncio.Event()
    ready: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    def on_ready(addresses: dict[str, str]) -> None:
        ready.set_result(addresses)

    task = asyncio.create_task(
        serve(
            settings,
            set(roles),
            sandbox=sandbox,
            ready=on_ready,
            stop=stop,
            clock=clock,
            configure_logging=False,
        )
    )
    waiting: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what made serve fail
        raise RuntimeError("serve returned before it was ready")
    try:
        yield ready.result()
    finally:
        stop.set()
        await task
