"""Helpers for end-to-end tests and benchmarks: run a real `sulai serve` process on free ports.

Shipped in the package (like aiohttp.test_utils) so tests, benchmarks and channel packages share
one way of starting the gateway.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


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


def write_toml(path: Path, config: dict[str, object]) -> Path:
    """A tiny TOML writer for test configs (scalars and one level of tables)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in config.items():
        if isinstance(values, dict):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
            for sub, subvalues in values.items():
                if isinstance(subvalues, dict):
                    lines.append(f"\n[{table}.{sub}]")
                    lines += [f"{k} = {_toml_value(v)}" for k, v in subvalues.items()]
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
    raise RuntimeError("sulai serve did not start:\n" + "".join(seen))
