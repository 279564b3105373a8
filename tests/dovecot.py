"""A throwaway Dovecot IMAP server on a free loopback port, for the IMAP tests (PROTOCOLS.md C.8).

Real server, private config and mail store in a temp directory, plain IMAP on 127.0.0.1 only.
When the ``dovecot`` binary is missing the tests FAIL (never skip) with the command that installs
it; ``scripts/ensure-dovecot.sh`` (run by ``make test`` and CI) does that as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER = "gateway@example.test"
PASSWORD = "s3cret"
INSTALL_HINT = (
    "Dovecot is not installed, so the IMAP tests cannot run. Install it with "
    "`bash scripts/ensure-dovecot.sh` (as root), i.e. "
    "`apt-get update && apt-get install -y --no-install-recommends dovecot-imapd`."
)


def dovecot_binary() -> str:
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    """One Dovecot master in ``base`` listening on 127.0.0.1:``port``."""

    def __init__(self, base: Path | None = None, port: int | None = None) -> None:
        self.binary = dovecot_binary()
        # Not under pytest's tmp_path: that is mode 0700 and Dovecot's unprivileged auth and mail
        # processes must read the users file and write the mail store.
        self.base = base or Path(tempfile.mkdtemp(prefix="sulai-dovecot-"))
        self.base.chmod(0o755)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = os.geteuid() == 0
        # As root the master drops to "nobody" for the mail store; otherwise everything runs as us.
        self.mail_user = "nobody" if self.root else pwd.getpwuid(os.geteuid()).pw_name
        self._write_config()

    def _write_config(self) -> None:
        d = self.base
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        group = "nogroup" if self.root else _group_name()
        if self.root:
            shutil.chown(d / "mail", user="nobody", group="nogroup")
        extra = ""
        if not self.root:
            extra = (
                f"default_internal_user = {self.mail_user}\ndefault_login_user = {self.mail_user}\n"
                f"default_internal_group = {group}\nservice anvil {{\n  chroot =\n}}\n"
            )
        login_chroot = "" if self.root else "  chroot =\n"
        (d / "dovecot.conf").write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = sulai-test-dovecot-{self.port}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
{extra}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={self.mail_user} gid={group} home={d}/mail/%u
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        )

    def start(self, timeout: float = 15.0) -> None:
        conf = self.base / "dovecot.conf"
        check = subprocess.run(
            [self.binary, "-n", "-c", str(conf)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            pytest.fail(f"dovecot rejected its test config: {check.stderr}", pytrace=False)
        # Its own process group, so stop() takes down the IMAP session processes too (a plain
        # SIGTERM to the master leaves logged-in sessions running: no connection would drop).
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"dovecot exited at start: {err} {self.log()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"dovecot did not listen on {self.port} within {timeout}s: {self.log()}", pytrace=False)

    def stop(self) -> None:
        if self.proc is None:
            return
        group = self.proc.pid  # the group we created at start, nothing else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # session processes that outlived the master
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        # The master's children close their sockets a moment later; wait until the port is free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.05)
            except OSError:
                return

    def remove(self) -> None:
        """Stop and delete the server's directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        p = self.base / "dovecot.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""


def _group_name() -> str:
    import grp

    return grp.getgrgid(os.getegid()).gr_name
