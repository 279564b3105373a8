"""``sulai simulate email``: mail the gateway like a citizen would, by real SMTP to its listener.

    sulai simulate email --from a@example.com --subject 路灯 "东风路的路灯坏了"

Defaults are the sandbox values of DESIGN.md (listener 127.0.0.1:2525, hotline@sulai.test).
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
from pathlib import Path

from channels.email.settings import SANDBOX_ADDRESS
from gateway.cli import SIMULATE_HELP, command_group


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mail = command_group(sub, "simulate", SIMULATE_HELP).add_parser(
        "email", help="send a mail as a citizen (real SMTP)"
    )
    mail.add_argument("text", help="the mail body")
    mail.add_argument("--from", dest="from_", default="citizen@example.com", help="the citizen's address")
    mail.add_argument("--to", default=SANDBOX_ADDRESS, help="our hotline address (default %(default)s)")
    mail.add_argument("--subject", default="", help="the subject line")
    mail.add_argument(
        "--smtp", default="127.0.0.1:2525", help="the gateway's SMTP listener (default %(default)s)"
    )
    mail.add_argument("--in-reply-to", default="", help="Message-ID this mail answers (threading)")
    mail.add_argument("--message-id", default=None, help="fixed Message-ID (to try a duplicate delivery)")
    mail.add_argument("--attach", action="append", default=[], type=Path, help="attach a file (repeatable)")
    mail.add_argument("--header", action="append", default=[], help="extra header 'Name: value' (repeatable)")
    mail.set_defaults(func=_cmd_simulate_email)


def _cmd_simulate_email(args: argparse.Namespace) -> int:
    import aiosmtplib

    try:
        response = asyncio.run(_send(args))
    except (aiosmtplib.SMTPException, OSError) as exc:
        print(f"mail not accepted by {args.smtp}: {exc} (is `sulai serve --sandbox` running?)")
        return 1
    print(response)
    return 0


async def _send(args: argparse.Namespace) -> str:
    from channels.email.simulator import citizen_mail, send_mail

    host, _, port = args.smtp.rpartition(":")
    headers = {}
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep:
            raise SystemExit(f"--header needs 'Name: value', got {line!r}")
        headers[name.strip()] = value.strip()
    attachments = [
        (p.name, mimetypes.guess_type(p.name)[0] or "application/octet-stream", p.read_bytes())
        for p in args.attach
    ]
    msg = citizen_mail(
        mail_from=args.from_,
        to=args.to,
        subject=args.subject,
        text=args.text,
        in_reply_to=args.in_reply_to,
        references=[args.in_reply_to] if args.in_reply_to else [],
        headers=headers,
        attachments=attachments,
        message_id=args.message_id,
    )
    response = await send_mail(host or "127.0.0.1", int(port), msg)
    return f"{response} (Message-ID {msg['Message-ID']})"
