"""A citizen's mail client for the sandbox, tests and benchmarks: builds a real mail and sends it
by SMTP to the gateway's listener (``sulai simulate email …``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib


def citizen_mail(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    in_reply_to: str = "",
    references: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),  # (filename, content type, data)
    message_id: str | None = None,
) -> EmailMessage:
    """The mail a citizen's client would write. ``message_id`` None: a fresh one; "": none at all."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    if message_id is None:
        message_id = make_msgid(domain=mail_from.rpartition("@")[2] or "example.com").strip("<>")
    if message_id:
        msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to.strip('<>')}>"
    if references:
        msg["References"] = " ".join(f"<{r.strip('<>')}>" for r in references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    for filename, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


async def send_mail(
    host: str,
    port: int,
    msg: EmailMessage,
    *,
    envelope_sender: str | None = None,
    username: str | None = None,
    password: str | None = None,
    start_tls: bool | None = False,
    timeout: float = 30.0,  # noqa: ASYNC109 - passed to aiosmtplib, which owns the deadline
) -> str:
    """Send ``msg`` to the gateway; returns the server's final response text. Raises aiosmtplib errors."""
    sender = envelope_sender if envelope_sender is not None else str(msg["From"])
    _, response = await aiosmtplib.send(
        msg,
        hostname=host,
        port=port,
        sender=sender,
        recipients=[str(msg["To"])],
        username=username,
        password=password,
        start_tls=start_tls,
        timeout=timeout,
    )
    return response
