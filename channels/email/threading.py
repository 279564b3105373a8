"""Threading replies to tickets (PROTOCOLS.md C.4).

A mail belongs to a ticket when one of our Message-IDs is in its In-Reply-To/References (the
caller looks those up in the thread map, :mod:`store.mail_state`), or else when its subject
carries a ticket id token such as ``[SN-261125-0042-7]``, tolerant of case, spaces and
full-width characters (``【ｓｎ－２６１１２５－００４２－７】``). Message-IDs are handled
without their angle brackets everywhere in Sulai.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata

from store.ticketid import TicketIdError, find_ticket_ids, parse_ticket_id

_BRACKETED = re.compile(r"[\[【〔［(（]\s*([^\]】〕］)）\[【〔［(（]{6,48}?)\s*[\]】〕］)）]")
_MSGID = re.compile(r"<([^<>\s]+)>")
_CRLF = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")


def subject_ticket_id(subject: str, prefix: str | None = None) -> str | None:
    """The ticket id a subject refers to, canonical, or None.

    A bracketed token wins; otherwise an unbracketed valid id anywhere in the subject. A token
    that fails its check digit is no reference (better a new ticket than someone else's)."""
    bracketed = _bracketed_ticket_id(subject, prefix)
    if bracketed is not None:
        return bracketed
    for found in find_ticket_ids(unicodedata.normalize("NFKC", subject), prefix):
        if isinstance(found, str):
            return found
    return None


def _bracketed_ticket_id(subject: str, prefix: str | None = None) -> str | None:
    for m in _BRACKETED.finditer(unicodedata.normalize("NFKC", subject)):
        try:
            return parse_ticket_id(m.group(1), prefix)
        except TicketIdError:
            continue
    return None


def message_ids(value: str) -> list[str]:
    """Message-IDs in a header value (In-Reply-To, References), without brackets, in order."""
    ids = _MSGID.findall(value or "")
    if not ids and value and "@" in value:
        ids = [v.strip("<>") for v in value.split() if "@" in v]  # brackets lost by a sloppy client
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def new_message_id(domain: str, ticket_id: str | None = None) -> str:
    """A fresh Message-ID of ours, without brackets; the ticket id in it helps people grep logs."""
    # Shorter than make_msgid's form, so the header is never folded onto a second line.
    idstring = re.sub(r"[^A-Za-z0-9-]", "", ticket_id or "") or "sulai"
    return f"{idstring}.{int(time.time())}.{secrets.token_hex(6)}@{domain}"


def reply_references(in_reply_to: str, references: str) -> tuple[str, str]:
    """(In-Reply-To, References) header values for our answer to a mail with Message-ID
    ``in_reply_to`` and References ``references`` (RFC 5322 §3.6.4). Only well-formed ids survive,
    so nothing from the citizen's headers can smuggle a line break into ours."""
    parent = message_ids(f"<{in_reply_to.strip('<> ')}>") if in_reply_to else []
    chain = message_ids(references) + parent
    deduped: list[str] = []
    for mid in chain[-20:]:  # long threads: keep the tail, as mail clients do
        if mid not in deduped:
            deduped.append(mid)
    return (f"<{parent[0]}>" if parent else "", " ".join(f"<{m}>" for m in deduped))


def one_line(text: str) -> str:
    """A header-safe single line: every control character (CR, LF, NUL …) becomes a space."""
    return " ".join(_CRLF.sub(" ", text).split())


def tagged_subject(ticket_id: str | None, subject: str) -> str:
    """``[<ticket id>] <subject>``, without repeating a token the subject already carries."""
    subject = one_line(subject)
    if not ticket_id:
        return subject
    if _bracketed_ticket_id(subject) == ticket_id:
        return subject  # "Re: [SN-…] …": the token is there already
    return f"[{ticket_id}] {subject}".strip()
