"""Shared parts of the email channel tests: fixture corpus, settings, a recording ``deliver``
callback standing in for the lead's intake, a file-backed media sink, and a self-signed cert."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.base import Inbound, MediaRef
from channels.email.settings import EmailSettings, ListenerSettings

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "email" / "fixtures"
OUR_MESSAGE_ID = "1764050400.4242.SN-261125-0042-1@sulai.test"
OUR_TICKET = "SN-261125-0042-1"
HOTLINE = "hotline@sulai.test"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def expectations() -> dict[str, dict[str, Any]]:
    return tomllib.loads((FIXTURES / "expectations.toml").read_text(encoding="utf-8"))


def email_settings(**listener: Any) -> EmailSettings:
    return EmailSettings(
        addresses=(HOTLINE, "12345@sulai.test"),
        max_attachment_bytes=100_000,
        max_attachments=5,
        listener=ListenerSettings(**listener),
    )


@dataclass
class Recorder:
    """The ``deliver`` callback under test: records what it got; can fail or hold on demand."""

    got: list[tuple[Inbound, bytes]] = field(default_factory=list)
    fail: Exception | None = None
    gate: asyncio.Event | None = None  # when set, deliver waits for it before "storing"
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, inbound: Inbound, raw: bytes) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.got.append((inbound, raw))

    @property
    def external_ids(self) -> list[str]:
        return [i.external_id for i, _ in self.got]


@dataclass
class DirMediaSink:
    """A content-addressed media store in a directory (the MediaSink contract of channels.base)."""

    root: Path

    async def __call__(self, data: bytes, content_type: str, filename: str) -> MediaRef:
        media_id = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread((self.root / media_id).write_bytes, data)
        return MediaRef(media_id=media_id, content_type=content_type, size=len(data), filename=filename)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, PEM files in ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
