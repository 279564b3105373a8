"""Sending mail: the :class:`EmailAdapter` (channels.base.ChannelAdapter) and its message builder.

Every header is set through ``email.message.EmailMessage`` from values first reduced to one line,
so ticket text can never add a header (CR/LF injection). Mail is always UTF-8 (PROTOCOLS.md C.6:
legacy charsets produce non-standard encoded words). Our Message-ID is returned as the
SendResult's provider id; the gateway stores it in the thread map so replies find the ticket.

The SMTP channel receives mail by the SMTP listener and IMAP poller, not by webhooks: ``routes()``
is empty and ``render_reply`` answers nothing.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import ssl
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

import aiosmtplib

from channels.base import (
    Capabilities,
    HttpAnswer,
    Outbound,
    Purpose,
    RenderedMessage,
    Route,
    SendError,
    SendErrorCode,
    SendResult,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
)
from channels.email.settings import EmailSettings
from channels.email.threading import message_ids, new_message_id, one_line, reply_references, tagged_subject

log = logging.getLogger(__name__)

# Answers to the citizen's own mail are "auto-replied"; notifications nobody asked for just now
# are "auto-generated" (RFC 3834 §5). A staff member's written answer is neither.
_AUTO_REPLIED = frozenset({Purpose.REPLY, Purpose.TICKET_CREATED})
_AUTO_GENERATED = frozenset({Purpose.STATUS, Purpose.SURVEY, Purpose.REMINDER, Purpose.WEBHOOK})


def _recipient(outbound: Outbound) -> str:
    scheme, _, addr = outbound.recipient.partition(":")
    if scheme != "mailto" or one_line(addr) != addr or any(c in addr for c in ',;<>" '):
        raise SendError(SendErrorCode.REJECTED, f"not a single mail address: {outbound.recipient!r}")
    return addr


def simple_html(text: str) -> str:
    """The plain text as minimal HTML: escaped, paragraphs and line breaks kept."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "\n".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'


def build_message(
    settings: EmailSettings, outbound: Outbound, message: RenderedMessage, now: datetime | None = None
) -> EmailMessage:
    """The complete mail for one Outbound. Raises SendError(REJECTED) for a bad recipient."""
    to = _recipient(outbound)
    msg = EmailMessage()
    local, _, domain = settings.sender.partition("@")
    msg["From"] = Address(display_name=one_line(settings.from_name), username=local, domain=domain)
    msg["To"] = to
    msg["Subject"] = tagged_subject(outbound.ticket_id, message.subject or outbound.ticket_id or "")
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = f"<{new_message_id(settings.message_id_domain, outbound.ticket_id)}>"
    in_reply_to, references = reply_references(
        outbound.attrs.get("in_reply_to", ""), outbound.attrs.get("references", "")
    )
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    auto = outbound.attrs.get("auto_submitted") or (
        "auto-replied"
        if outbound.purpose in _AUTO_REPLIED
        else "auto-generated"
        if outbound.purpose in _AUTO_GENERATED
        else ""
    )
    if auto and auto != "no":
        msg["Auto-Submitted"] = one_line(auto)
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "bulk"
    if outbound.ticket_id:
        msg["X-Sulai-Ticket"] = one_line(outbound.ticket_id)
    msg["X-Sulai-Outbound"] = one_line(outbound.id)
    msg.set_content(message.text, charset="utf-8")
    msg.add_alternative(message.html or simple_html(message.text), subtype="html", charset="utf-8")
    return msg


def _classify(exc: Exception) -> SendError:
    """aiosmtplib errors -> the closed set: 4xx and network trouble retry, 5xx do not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        if codes and all(c >= 500 for c in codes):
            return SendError(SendErrorCode.UNREACHABLE, str(exc), provider_code=str(codes[0]))
        return SendError(SendErrorCode.TEMPORARY, str(exc), provider_code=str(codes[0] if codes else ""))
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendError(SendErrorCode.MISCONFIGURED, str(exc), provider_code=str(exc.code))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            code = (
                SendErrorCode.MISCONFIGURED
                if isinstance(exc, aiosmtplib.SMTPSenderRefused)
                else SendErrorCode.REJECTED
            )
            return SendError(code, str(exc), provider_code=str(exc.code))
        return SendError(SendErrorCode.TEMPORARY, str(exc), provider_code=str(exc.code))
    return SendError(SendErrorCode.TEMPORARY, f"{type(exc).__name__}: {exc}")


class ThreadRecorder(Protocol):
    """Where the Message-IDs of a ticket's mails are kept for threading (store.mail_state.MailState):
    ours -> ticket for the citizen's replies, and ticket -> recent ids (theirs and ours) for
    pushes that answer no particular mail."""

    async def remember_sent(self, message_id: str, ticket_id: str, earlier: Sequence[str] = ()) -> None: ...

    async def ticket_refs(self, ticket_id: str) -> list[str]: ...


class EmailAdapter:
    """Sends Outbound mail through the configured SMTP relay with aiosmtplib.

    With ``threads`` given, the Message-ID of every mail sent about a ticket is remembered, so the
    citizen's reply threads to the ticket whatever they do to the subject."""

    name = "email"
    capabilities = Capabilities(max_text_chars=100_000, inline_reply=False, media=True)

    def __init__(
        self,
        settings: EmailSettings,
        *,
        threads: ThreadRecorder | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.threads = threads
        self.tls_context = tls_context

    def routes(self) -> Sequence[Route]:
        return ()

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        raise WebhookRejected(404, "email arrives by SMTP or IMAP, not by webhook")

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        return HttpAnswer()

    async def _threaded(self, outbound: Outbound) -> Outbound:
        """A mail about a ticket that answers no particular mail (a status push, a survey) joins
        the ticket's thread: In-Reply-To our latest mail about it (or the citizen's), References
        the ones before. Without a record it goes out unthreaded; the subject token still works."""
        attrs = outbound.attrs
        if (
            self.threads is None
            or not outbound.ticket_id
            or attrs.get("in_reply_to")
            or attrs.get("references")
        ):
            return outbound
        try:
            refs = await self.threads.ticket_refs(outbound.ticket_id)
        except Exception:
            log.exception("could not read the thread of %s", outbound.ticket_id)
            return outbound
        if not refs:
            return outbound
        chain = {"in_reply_to": refs[-1], "references": " ".join(f"<{m}>" for m in refs[:-1])}
        return dataclasses.replace(outbound, attrs={**attrs, **chain})

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        outbound = await self._threaded(outbound)
        msg = build_message(self.settings, outbound, message)
        relay = self.settings.relay
        security = relay.security
        try:
            await aiosmtplib.send(
                msg,
                hostname=relay.host,
                port=relay.port,
                sender=self.settings.bounce_sender,
                recipients=[_recipient(outbound)],
                username=relay.username or None,
                password=relay.password or None,
                use_tls=security == "tls",
                start_tls=True if security == "starttls" else False if security in ("none", "tls") else None,
                tls_context=self.tls_context,
                validate_certs=relay.validate_certs,
                timeout=relay.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from exc
        message_id = str(msg["Message-ID"]).strip().strip("<>")
        if self.threads is not None and outbound.ticket_id:
            # After the relay took it: a failed send must not leave a thread entry behind. If this
            # write fails the mail is out anyway; the subject token still threads the reply.
            earlier = [
                *message_ids(str(msg.get("References", ""))),
                *message_ids(str(msg.get("In-Reply-To", ""))),
            ]
            try:
                await self.threads.remember_sent(message_id, outbound.ticket_id, earlier)
            except Exception:
                log.exception("could not record the thread of %s", message_id)
        return SendResult(provider_id=message_id, status="sent", path="smtp")

    def secrets(self) -> Iterable[str]:
        found = [self.settings.relay.password, *self.settings.listener.auth_users.values()]
        found += [m.password for m in self.settings.imap]
        return [s for s in found if s]

    async def close(self) -> None:
        return None
