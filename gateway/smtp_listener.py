"""The inbound SMTP server: aiosmtpd on the gateway's own event loop (PROTOCOLS.md C.1).

``loop.create_server(lambda: SMTP(handler, …))`` rather than aiosmtpd's threaded Controller, so
the handler can share the app's Redis client and intake. Contract with the sender:

- RCPT for an address that is not one of our hotline addresses: ``550``;
- a mail over the size limit: ``552`` (at MAIL FROM when the client declares SIZE, else after DATA);
- ``250`` only after ``deliver(inbound, raw)`` returned, i.e. the intake stored the mail: a crash
  before that leaves the sender to retry, a crash after it loses nothing;
- ``451`` when parsing or ``deliver`` fails, so the sender retries later (the intake dedupes by
  ``Inbound.external_id``, so a retry of a stored mail is harmless).

Optional STARTTLS (``tls_context`` or the configured cert/key) and AUTH (configured logins).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.base import Inbound
from channels.email.parser import MailParser
from channels.email.settings import EmailSettings

log = logging.getLogger(__name__)

# The gateway's intake: store (dedupe, file, answer) one parsed mail; raise if it could not.
Deliver = Callable[[Inbound, bytes], Awaitable[None]]


def tls_context_from_files(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


class _Handler:
    """aiosmtpd finds these hooks by name; :func:`SmtpListener._check_hooks` makes sure they exist."""

    def __init__(self, listener: SmtpListener) -> None:
        self.listener = listener

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() not in self.listener.accepted:
            return "550 5.1.1 Recipient address rejected: not a mailbox of this office"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self.listener.receive(envelope)


class SmtpListener:
    """The SMTP server. ``start()`` binds it on the running loop and returns the port."""

    def __init__(
        self,
        settings: EmailSettings,
        parser: MailParser,
        deliver: Deliver,
        *,
        host: str = "127.0.0.1",
        port: int = 2525,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.parser = parser
        self.deliver = deliver
        self.host = host
        self.port = port
        self.accepted = frozenset(a.lower() for a in settings.addresses)
        lst = settings.listener
        if tls_context is None and lst.tls_cert_file:
            tls_context = tls_context_from_files(lst.tls_cert_file, lst.tls_key_file)
        self.tls_context = tls_context
        self._server: asyncio.Server | None = None
        self._handler = _Handler(self)
        self.received = 0  # mails answered 250
        self.failed = 0  # mails answered 451

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        expected = self.settings.listener.auth_users.get(login)
        ok = expected is not None and hmac.compare_digest(expected.encode(), auth_data.password)
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        lst = self.settings.listener
        return SMTP(
            self._handler,
            hostname=lst.hostname,
            ident="Sulai ESMTP",
            data_size_limit=lst.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=self.tls_context,
            require_starttls=lst.require_starttls and self.tls_context is not None,
            auth_required=lst.auth_required,
            # Passwords only over TLS when we have TLS; a loopback test set-up without TLS may AUTH in clear.
            auth_require_tls=self.tls_context is not None,
            authenticator=self._authenticate if lst.auth_users else None,
            timeout=120,
        )

    async def start(self) -> int:
        for hook in ("handle_RCPT", "handle_DATA"):
            if not callable(getattr(self._handler, hook, None)):  # aiosmtpd would silently skip it
                raise TypeError(f"SMTP handler lacks {hook}")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SMTP listener on %s:%d for %s", self.host, self.port, ", ".join(sorted(self.accepted)))
        return self.port

    async def receive(self, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        account = str(envelope.rcpt_tos[0]).lower() if envelope.rcpt_tos else self.settings.addresses[0]
        try:
            inbound = await self.parser.parse(
                raw, account=account, envelope_sender=envelope.mail_from, via="smtp"
            )
            await self.deliver(inbound, raw)
        except Exception:
            self.failed += 1
            log.exception(
                "SMTP mail from %s not stored; answering 451 so the sender retries", _mask(envelope.mail_from)
            )
            return "451 4.3.0 Temporary failure storing the message, please retry later"
        self.received += 1
        return "250 2.0.0 OK: message stored"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def _mask(address: str | None) -> str:
    """Addresses are personal data: logs keep the domain only."""
    if not address:
        return "<>"
    return "***@" + address.rpartition("@")[2].strip(">")
