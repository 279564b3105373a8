"""Typed settings of the email channel: hotline addresses, the SMTP listener's limits, the outbound
relay, IMAP mailboxes and attachment limits.

Parsed from the ``[email]`` table of the config file by :func:`parse_settings`; secrets may come
from the environment instead of the file:

- ``SULAI_EMAIL_RELAY_PASSWORD``: password for the outbound relay (``relay.password``);
- ``SULAI_EMAIL_IMAP_<NAME>_PASSWORD``: password of the IMAP mailbox named ``<NAME>`` (upper-cased,
  ``-`` as ``_``);
- ``SULAI_EMAIL_SMTP_AUTH_<LOGIN>``: password of a listener AUTH login (``listener.auth_users``).

The SMTP listener's host and port are the gateway's ``[smtp]`` section, not this one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

MiB = 1024 * 1024
SANDBOX_ADDRESS = "hotline@sulai.test"
_ADDRESS_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$|^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")
_RELAY_SECURITY = ("starttls", "tls", "none", "auto")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")

# Attachment types kept but flagged for staff: things that run when double-clicked or carry macros.
DEFAULT_DANGEROUS_EXTENSIONS = (
    "exe", "com", "scr", "pif", "bat", "cmd", "js", "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "msi",
    "hta", "jar", "lnk", "reg", "cpl", "dll", "docm", "xlsm", "pptm", "dotm", "xlam", "iso", "apk",
)  # fmt: skip


@dataclass(frozen=True)
class ListenerSettings:
    hostname: str = "sulai.local"  # the name in the SMTP greeting
    max_message_bytes: int = 25 * MiB  # advertised as SIZE; larger mails get 552
    tls_cert_file: str = ""  # both set: STARTTLS offered
    tls_key_file: str = ""
    require_starttls: bool = False
    auth_required: bool = False
    auth_users: Mapping[str, str] = field(default_factory=dict)  # login -> password


@dataclass(frozen=True)
class RelaySettings:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "auto"  # starttls | tls (implicit, 465) | none | auto (upgrade when offered)
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    validate_certs: bool = True


@dataclass(frozen=True)
class ImapMailbox:
    name: str  # short id, used in metrics and the UID state key
    host: str
    user: str
    password: str
    port: int = 993
    tls: bool = True
    folders: tuple[str, ...] = ("INBOX",)
    after: str = "seen"  # "seen": flag \\Seen; "move:<folder>": move there (created when missing)
    idle: bool = True  # use IDLE when the server offers it and one folder is watched
    poll_seconds: float = 60.0
    idle_renew_seconds: float = 25 * 60  # RFC 2177: re-issue IDLE within 29 minutes
    batch: int = 50

    @property
    def move_to(self) -> str:
        return self.after.partition(":")[2] if self.after.startswith("move:") else ""


@dataclass(frozen=True)
class EmailSettings:
    addresses: tuple[str, ...] = (SANDBOX_ADDRESS,)  # hotline addresses we accept mail for
    from_address: str = ""  # sender of our mails; default: the first address
    from_name: str = ""  # display name of our mails
    envelope_sender: str = ""  # MAIL FROM for bounces; default: from_address
    domain: str = ""  # right-hand side of our Message-IDs; default: the from address's domain
    ack_per_hour: int = 5  # acknowledgements per sender and hour
    max_attachment_bytes: int = 20 * MiB
    max_attachments: int = 20
    dangerous_extensions: tuple[str, ...] = DEFAULT_DANGEROUS_EXTENSIONS
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    imap: tuple[ImapMailbox, ...] = ()

    @property
    def sender(self) -> str:
        return self.from_address or self.addresses[0]

    @property
    def bounce_sender(self) -> str:
        return self.envelope_sender or self.sender

    @property
    def message_id_domain(self) -> str:
        return self.domain or self.sender.rpartition("@")[2]

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address of ours, lower-cased: mail from these is never answered."""
        return frozenset(a.lower() for a in (*self.addresses, self.sender, self.bounce_sender))


# ---------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Typed access to one table that names the offending key on error."""

    def __init__(self, raw: Mapping[str, Any], where: str, known: set[str]) -> None:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a table, got {raw!r}")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"{where}.{unknown[0]}: expected one of {', '.join(sorted(known))}, got unknown key"
            )
        self.raw, self.where = raw, where

    def get(self, key: str, kind: type, default: Any) -> Any:
        if key not in self.raw:
            return default
        value = self.raw[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ValueError(f"{self.where}.{key}: expected {kind.__name__}, got {value!r}")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise ValueError(f"{self.where}.{key}: expected a positive number, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{self.where}.{key}: expected a list of non-empty strings, got {value!r}")
        return tuple(value)

    def address(self, key: str, default: str) -> str:
        value = self.get(key, str, default)
        if value and not _ADDRESS_RE.match(value):
            raise ValueError(f"{self.where}.{key}: expected an email address, got {value!r}")
        return str(value)


def _env_name(part: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", part.upper())


def _listener(raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> ListenerSettings:
    r = _Reader(raw, where, {f for f in ListenerSettings.__dataclass_fields__})
    users = r.get("auth_users", dict, {})
    users = {str(k): str(v) for k, v in users.items()}
    for login in users:
        users[login] = env.get(f"SULAI_EMAIL_SMTP_AUTH_{_env_name(login)}", users[login])
    s = ListenerSettings(
        hostname=r.get("hostname", str, "sulai.local"),
        max_message_bytes=r.positive("max_message_bytes", int, 25 * MiB),
        tls_cert_file=r.get("tls_cert_file", str, ""),
        tls_key_file=r.get("tls_key_file", str, ""),
        require_starttls=r.get("require_starttls", bool, False),
        auth_required=r.get("auth_required", bool, False),
        auth_users=MappingProxyType(users),
    )
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise ValueError(f"{where}.tls_key_file: expected both tls_cert_file and tls_key_file, got only one")
    if s.require_starttls and not s.tls_cert_file:
        raise ValueError(f"{where}.require_starttls: expected tls_cert_file/tls_key_file to be set, got none")
    if s.auth_required and not users:
        raise ValueError(f"{where}.auth_users: expected at least one login when auth_required, got none")
    return s


def _relay(raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> RelaySettings:
    r = _Reader(raw, where, {f for f in RelaySettings.__dataclass_fields__})
    security = r.get("security", str, "auto")
    if security not in _RELAY_SECURITY:
        raise ValueError(f"{where}.security: expected one of {', '.join(_RELAY_SECURITY)}, got {security!r}")
    port = r.get("port", int, 25)
    if not 0 < port < 65536:
        raise ValueError(f"{where}.port: expected a TCP port, got {port!r}")
    return RelaySettings(
        host=r.get("host", str, "127.0.0.1"),
        port=port,
        security=security,
        username=r.get("username", str, ""),
        password=env.get("SULAI_EMAIL_RELAY_PASSWORD", r.get("password", str, "")),
        timeout=r.positive("timeout", float, 30.0),
        validate_certs=r.get("validate_certs", bool, True),
    )


def _mailbox(raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> ImapMailbox:
    r = _Reader(raw, where, {f for f in ImapMailbox.__dataclass_fields__})
    name = r.get("name", str, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
        raise ValueError(f"{where}.name: expected 1-32 letters, digits, '-' or '_', got {name!r}")
    host = r.get("host", str, "")
    if not host:
        raise ValueError(f"{where}.host: expected a host name, got {host!r}")
    tls = r.get("tls", bool, True)
    if not tls and host not in _LOOPBACK:
        # Plain IMAP would send the mailbox password in clear over the network.
        raise ValueError(f"{where}.tls: expected true for a non-loopback host, got false for {host!r}")
    after = r.get("after", str, "seen")
    if after != "seen" and not (after.startswith("move:") and len(after) > 5):
        raise ValueError(f"{where}.after: expected 'seen' or 'move:<folder>', got {after!r}")
    password = env.get(f"SULAI_EMAIL_IMAP_{_env_name(name)}_PASSWORD", r.get("password", str, ""))
    renew = r.positive("idle_renew_seconds", float, 25 * 60.0)
    if renew > 29 * 60:
        raise ValueError(f"{where}.idle_renew_seconds: expected at most 1740 (RFC 2177), got {renew!r}")
    return ImapMailbox(
        name=name,
        host=host,
        user=r.get("user", str, ""),
        password=password,
        port=r.get("port", int, 993 if tls else 143),
        tls=tls,
        folders=r.strings("folders", ("INBOX",)),
        after=after,
        idle=r.get("idle", bool, True),
        poll_seconds=r.positive("poll_seconds", float, 60.0),
        idle_renew_seconds=renew,
        batch=r.positive("batch", int, 50),
    )


def parse_settings(
    raw: Mapping[str, Any], where: str = "email", env: Mapping[str, str] | None = None
) -> EmailSettings:
    """The ``[email]`` table as typed settings; ``ValueError("<where>.<key>: expected …")`` on error."""
    env = os.environ if env is None else env
    r = _Reader(raw, where, {f for f in EmailSettings.__dataclass_fields__})
    addresses = r.strings("addresses", (SANDBOX_ADDRESS,))
    for i, a in enumerate(addresses):
        if not _ADDRESS_RE.match(a):
            raise ValueError(f"{where}.addresses[{i}]: expected an email address, got {a!r}")
    imap_raw = raw.get("imap", [])
    if not isinstance(imap_raw, list):
        raise ValueError(f"{where}.imap: expected an array of tables ([[email.imap]]), got {imap_raw!r}")
    mailboxes = tuple(_mailbox(m, f"{where}.imap[{i}]", env) for i, m in enumerate(imap_raw))
    if len({m.name for m in mailboxes}) != len(mailboxes):
        raise ValueError(f"{where}.imap: expected unique mailbox names, got {[m.name for m in mailboxes]}")
    return EmailSettings(
        addresses=tuple(a.strip() for a in addresses),
        from_address=r.address("from_address", ""),
        from_name=r.get("from_name", str, ""),
        envelope_sender=r.address("envelope_sender", ""),
        domain=r.get("domain", str, ""),
        ack_per_hour=r.positive("ack_per_hour", int, 5),
        max_attachment_bytes=r.positive("max_attachment_bytes", int, 20 * MiB),
        max_attachments=r.positive("max_attachments", int, 20),
        dangerous_extensions=tuple(
            e.lower().lstrip(".") for e in r.strings("dangerous_extensions", DEFAULT_DANGEROUS_EXTENSIONS)
        ),
        listener=_listener(raw.get("listener", {}), f"{where}.listener", env),
        relay=_relay(raw.get("relay", {}), f"{where}.relay", env),
        imap=mailboxes,
    )


def sandbox_settings(data_dir: Path, relay_port: int, relay_host: str = "127.0.0.1") -> EmailSettings:
    """DESIGN.md's sandbox: hotline@sulai.test, outbound to the local mail sink (which writes
    ``<data-dir>/sandbox/mail-sent/*.eml``; see :mod:`channels.email.fake`), no IMAP."""
    del data_dir  # the sink, started by the caller, owns the directory
    return EmailSettings(
        addresses=(SANDBOX_ADDRESS,),
        from_name="Sulai sandbox",
        domain="sulai.test",
        relay=RelaySettings(host=relay_host, port=relay_port, security="none"),
    )
