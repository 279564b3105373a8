"""One parser for mail received by SMTP and fetched by IMAP: raw RFC 5322 bytes -> :class:`Inbound`.

Two steps, so the pure part needs no I/O: :func:`analyse` reads the mail (headers, body text,
quoted history, loop verdict, bounce, attachment parts) and :class:`MailParser` adds what needs
the outside world (attachments into the media store, our Message-IDs looked up in the thread
map). Nothing here raises on bad input: a mail the stdlib cannot make sense of still becomes an
Inbound, with replacement characters at worst; the raw bytes are always kept by the caller.
"""

from __future__ import annotations

import dataclasses
import email
import hashlib
import mimetypes
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Any

from channels.base import Inbound, InboundKind, MediaRef, MediaSink, mailto_address
from channels.email.charsets import decode_header_value, header_decoded, part_text
from channels.email.html_text import html_to_text
from channels.email.loops import LoopVerdict, bounce_attrs, classify, parse_bounce
from channels.email.quotes import strip_quoted
from channels.email.settings import EmailSettings
from channels.email.threading import message_ids, subject_ticket_id

CHANNEL = "email"
UNKNOWN_SENDER = "unknown@invalid"
MAX_TEXT = 50_000
MAX_FULL_TEXT = 200_000
_DANGEROUS_TYPES = frozenset(
    {"application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
     "application/javascript", "application/x-javascript", "text/javascript", "application/x-sh",
     "application/hta", "application/x-ms-shortcut", "application/vnd.ms-word.document.macroenabled.12"}
)  # fmt: skip

# Given the Message-IDs a mail refers to, the ticket id of the first one that is ours, or None.
ThreadLookup = Callable[[Sequence[str]], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class AttachmentPart:
    filename: str
    content_type: str
    data: bytes
    dangerous: bool


@dataclass(frozen=True)
class MailFacts:
    """Everything read from one mail without I/O."""

    message_id: str
    external_id: str
    sender: str  # bare address ('' when none could be found)
    from_name: str
    subject: str
    text: str  # what the sender wrote now (quoted history stripped)
    full_text: str
    verdict: LoopVerdict
    attrs: dict[str, str]
    attachments: list[AttachmentPart] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # attachments over the limits: name (reason)
    is_bounce: bool = False


def stable_id(msg: Message, raw: bytes) -> str:
    """An id for a mail without Message-ID, equal for the copy received by SMTP and the copy
    fetched by IMAP: the headers the sender wrote (not the Received/Return-Path a server adds)
    and the body."""
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.partition(b"\n\n")[2]
    body = b"\n".join(line.rstrip() for line in body.replace(b"\r\n", b"\n").split(b"\n")).strip()
    h = hashlib.sha256()
    for name in ("From", "To", "Cc", "Date", "Subject"):
        h.update(name.encode() + b":" + header_decoded(msg, name).encode("utf-8", "replace") + b"\n")
    h.update(body)
    return "sha256:" + h.hexdigest()[:40]


def _sender(msg: Message, envelope_sender: str | None) -> tuple[str, str]:
    pairs = [(n, a) for n, a in getaddresses([header_decoded(msg, "From")]) if "@" in a]
    if pairs:
        return pairs[0][1].strip(), pairs[0][0].strip()
    for fallback in (
        envelope_sender or "",
        header_decoded(msg, "Sender"),
        header_decoded(msg, "Return-Path"),
    ):
        addr = fallback.strip().strip("<>")
        if "@" in addr:
            return addr, ""
    return "", ""


def _body(msg: Message) -> tuple[str, dict[str, str], set[int]]:
    """Body text (plain preferred, else HTML as text), attrs about it, ids of the parts used."""
    attrs: dict[str, str] = {}
    used: set[int] = set()
    plain = html = None
    try:
        plain = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        html = msg.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    except (KeyError, AttributeError, TypeError, IndexError):
        pass
    if plain is None and html is None and not msg.is_multipart() and msg.get_content_maintype() == "text":
        plain, html = (msg, None) if msg.get_content_subtype() != "html" else (None, msg)
    text, clean = "", True
    if plain is not None:
        text, clean = part_text(plain)
        used.add(id(plain))
    if html is not None:
        used.add(id(html))
        if not text.strip():
            html_raw, clean = part_text(html)
            text = html_to_text(html_raw)
            attrs["html_only"] = "1"
    if not clean:
        attrs["charset_fallback"] = "1"
    return text, attrs, used


def _walk_leaves(msg: Message) -> Iterator[Message]:
    """Leaf parts in order; an attached mail (message/rfc822) is one leaf, not descended into."""
    if msg.get_content_type() == "message/rfc822" or not msg.is_multipart():
        yield msg
        return
    payload = msg.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _walk_leaves(part)


def _attachment_parts(
    msg: Message, used: set[int], settings: EmailSettings
) -> tuple[list[AttachmentPart], list[str]]:
    parts: list[AttachmentPart] = []
    dropped: list[str] = []
    for part in _walk_leaves(msg) if msg.is_multipart() else iter(()):
        if id(part) in used or part.get_content_type() in ("message/delivery-status", "text/rfc822-headers"):
            continue
        filename = _filename(part)
        ctype = part.get_content_type()
        if (
            part.get_content_maintype() == "text"
            and not filename
            and part.get_content_disposition() != "attachment"
        ):
            continue  # an alternative body, not an attachment
        if ctype == "message/rfc822":
            inner = part.get_payload()
            data = (
                inner[0].as_bytes()
                if isinstance(inner, list) and inner and isinstance(inner[0], Message)
                else b""
            )
            filename = filename or "attached-message.eml"
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        filename = (
            filename or f"attachment-{len(parts) + len(dropped) + 1}{mimetypes.guess_extension(ctype) or ''}"
        )
        ext = filename.rpartition(".")[2].lower() if "." in filename else ""
        if len(parts) >= settings.max_attachments:
            dropped.append(f"{filename} (count)")
        elif len(data) > settings.max_attachment_bytes:
            dropped.append(f"{filename} (size {len(data)})")
        else:
            dangerous = ext in settings.dangerous_extensions or ctype in _DANGEROUS_TYPES
            parts.append(AttachmentPart(filename, ctype, data, dangerous))
    return parts, dropped


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""  # RFC 2231 (现场照片.jpg) and encoded words
    except (ValueError, LookupError, TypeError):
        name = ""
    name = decode_header_value(name) if name and "=?" in name else name
    return re.sub(r"[\x00-\x1f/\\]", "_", name).strip()[:200]


_ABSENT = object()


class _ReadOnlyMail(EmailMessage):
    """A parsed mail we only read: each header is parsed once, however often it is asked for.
    (policy.default parses a header on every ``get``; reading one mail asks for Content-Type
    a dozen times.)"""

    _cache: dict[str, Any]

    def get(self, name: str, failobj: Any = None) -> Any:
        try:
            cache = self._cache
        except AttributeError:
            cache = self._cache = {}
        key = name.lower()
        try:
            value = cache[key]
        except KeyError:
            # Cached without the caller's default: get_content_type passes a new sentinel each time.
            value = cache[key] = super().get(name, _ABSENT)
        return failobj if value is _ABSENT else value

    def __setitem__(self, name: str, val: Any) -> None:
        self.__dict__.pop("_cache", None)
        super().__setitem__(name, val)

    def __delitem__(self, name: str) -> None:
        self.__dict__.pop("_cache", None)
        super().__delitem__(name)


_POLICY = policy.default.clone(message_factory=_ReadOnlyMail)


def _parse(raw: bytes) -> tuple[Message, bool]:
    """The parsed mail; a multipart whose declared boundary never occurs is re-read with the
    boundary its body actually uses (a damage some bulk mailers produce). True when repaired."""
    msg = email.message_from_bytes(raw, policy=_POLICY)
    if msg.get_content_maintype() != "multipart" or msg.is_multipart():
        return msg, False
    payload = msg.get_payload()
    found = re.search(r"^--([^\s-][^\r\n]*?)(--)?\s*$", payload if isinstance(payload, str) else "", re.M)
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    if found is None or not sep:
        return msg, False
    boundary = found.group(1).encode("ascii", "replace")
    fixed = re.sub(
        rb'boundary\s*=\s*("[^"]*"|[^;\s]+)', b'boundary="' + boundary + b'"', head, count=1, flags=re.I
    )
    return email.message_from_bytes(fixed + sep + body, policy=_POLICY), True


def analyse(
    raw: bytes, settings: EmailSettings, *, envelope_sender: str | None = None, prefix: str | None = None
) -> MailFacts:
    """Read one mail; pure (no I/O, no clock)."""
    msg, repaired = _parse(raw)
    sender, from_name = _sender(msg, envelope_sender)
    subject = header_decoded(msg, "Subject")
    message_id = (message_ids(header_decoded(msg, "Message-ID")) or [""])[0]
    text, attrs, used = _body(msg)
    stripped = strip_quoted(text)
    verdict = classify(msg, sender, envelope_sender, settings.own_addresses)
    if not sender:
        verdict = dataclasses.replace(verdict, no_auto_reply=True, reasons=(*verdict.reasons, "no-sender"))
    bounce = parse_bounce(msg)
    attachments, dropped = _attachment_parts(msg, used, settings)
    references = message_ids(header_decoded(msg, "References"))
    in_reply_to = message_ids(header_decoded(msg, "In-Reply-To"))
    attrs.update(
        {
            "message_id": message_id,
            "in_reply_to": " ".join(in_reply_to),
            "references": " ".join(references),
            "subject": subject,
            "from_name": from_name,
            "reply_to": ",".join(a for _, a in getaddresses([header_decoded(msg, "Reply-To")]) if "@" in a),
            "date": header_decoded(msg, "Date"),
            "thread_ticket_id": subject_ticket_id(subject, prefix) or "",
            "thread_source": "",
            "no_auto_reply": "1" if verdict.no_auto_reply else "0",
            "automated": "1" if verdict.automated else "0",
            "ack_suppressed": "1" if verdict.ack_suppressed else "0",
            "loop_reasons": ",".join(verdict.reasons),
            "quoted": "1" if stripped.quoted else "0",
            "forwarded": "1" if stripped.forwarded else "0",
            "full_text": text[:MAX_FULL_TEXT],
            "envelope_sender": (envelope_sender or "").strip("<>"),
            "size": str(len(raw)),
        }
    )
    if repaired:
        attrs["mime_repaired"] = "1"
    if attrs["thread_ticket_id"]:
        attrs["thread_source"] = "subject"
    if dropped:
        attrs["attachments_dropped"] = "; ".join(dropped)
    if bounce is not None:
        attrs.update(bounce_attrs(bounce))
    return MailFacts(
        message_id=message_id,
        external_id=message_id or stable_id(msg, raw),
        sender=sender,
        from_name=from_name,
        subject=subject,
        text=stripped.text[:MAX_TEXT],
        full_text=text,
        verdict=verdict,
        attrs=attrs,
        attachments=attachments,
        dropped=dropped,
        is_bounce=bounce is not None,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class MailParser:
    """Raw mail -> Inbound, with attachments stored and replies threaded by our Message-IDs.

    ``thread_lookup`` maps the In-Reply-To/References ids to a ticket (store.mail_state); a hit
    there wins over a subject token because a token can be typed by hand (and mistyped)."""

    def __init__(
        self,
        settings: EmailSettings,
        media_sink: MediaSink | None = None,
        *,
        tenant: str = "default",
        ticket_prefix: str | None = None,
        thread_lookup: ThreadLookup | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.media_sink = media_sink
        self.tenant = tenant
        self.ticket_prefix = ticket_prefix
        self.thread_lookup = thread_lookup
        self.clock = clock

    async def parse(
        self, raw: bytes, *, account: str, envelope_sender: str | None = None, via: str = "smtp"
    ) -> Inbound:
        facts = analyse(raw, self.settings, envelope_sender=envelope_sender, prefix=self.ticket_prefix)
        attrs = dict(facts.attrs, via=via)
        if self.thread_lookup is not None:
            ids = [*facts.attrs["in_reply_to"].split(), *reversed(facts.attrs["references"].split())]
            ticket = await self.thread_lookup(ids) if ids else None
            if ticket:
                attrs["thread_ticket_id"], attrs["thread_source"] = ticket, "references"
        media: list[MediaRef] = []
        if self.media_sink is not None:
            for part in facts.attachments:
                ref = await self.media_sink(part.data, part.content_type, part.filename)
                media.append(dataclasses.replace(ref, flagged=True) if part.dangerous else ref)
        elif facts.attachments:
            attrs["attachments_unstored"] = ", ".join(p.filename for p in facts.attachments)
        return Inbound(
            channel=CHANNEL,
            account=account,
            sender=mailto_address(facts.sender or UNKNOWN_SENDER),
            external_id=facts.external_id,
            kind=InboundKind.EVENT if facts.is_bounce else InboundKind.EMAIL,
            event="delivery_report" if facts.is_bounce else None,
            received_at=self.clock(),
            text=facts.text,
            tenant=self.tenant,
            media=tuple(media),
            attrs=attrs,
        )
