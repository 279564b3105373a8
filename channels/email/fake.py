"""A loopback SMTP relay for the sandbox and tests: it accepts what the EmailAdapter sends and
writes each mail as an ``.eml`` file (DESIGN.md: ``<data-dir>/sandbox/mail-sent/``).

It speaks real SMTP (aiosmtpd on the running loop), with errors on demand: recipients that get
``550`` (unknown user) or ``451`` (try later) at RCPT, and an optional DATA failure. Each file
starts with ``Return-Path`` and ``Delivered-To`` lines, as a real delivery agent writes them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class SunkMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes  # as received, without the lines the sink prepends to the file
    path: Path


@dataclass
class MailSink:
    out_dir: Path
    reject: set[str] = field(default_factory=set)  # 550 at RCPT
    tempfail: set[str] = field(default_factory=set)  # 451 at RCPT
    data_response: str = ""  # e.g. "554 5.6.0 content rejected": answer DATA with it
    received: list[SunkMail] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.reject:
            return "550 5.1.1 User unknown"
        if address.lower() in self.tempfail:
            return "451 4.2.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_response:
            return self.data_response
        raw = envelope.original_content or envelope.content or b""
        raw = raw if isinstance(raw, bytes) else raw.encode()
        mail_from = envelope.mail_from or ""
        rcpts = tuple(envelope.rcpt_tos)
        head = f"Return-Path: <{mail_from}>\r\n" + "".join(f"Delivered-To: {r}\r\n" for r in rcpts)
        path = self.out_dir / f"{time.time_ns()}-{next(self._seq):06d}.eml"
        await asyncio.to_thread(path.write_bytes, head.encode() + raw)
        self.received.append(SunkMail(mail_from, rcpts, raw, path))
        return "250 2.0.0 OK: written"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.sulai.test", enable_SMTPUTF8=True, decode_data=False),
            host,
            port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def start_sink(out_dir: Path, host: str = "127.0.0.1", port: int = 0) -> MailSink:
    """A running sink writing to ``out_dir`` (the sandbox passes ``<data-dir>/sandbox/mail-sent``)."""
    sink = MailSink(out_dir=out_dir)
    await sink.start(host, port)
    return sink


def sandbox_mail_dir(data_dir: Path) -> Path:
    return data_dir / "sandbox" / "mail-sent"
