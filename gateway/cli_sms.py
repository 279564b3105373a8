"""``sulai simulate sms``: text the gateway like a citizen would, through a signed Twilio webhook.

    sulai simulate sms --from +8613812345678 "路灯坏了"

Defaults are the sandbox values of DESIGN.md (gateway http://127.0.0.1:8080, Account SID AC+32
zeros, auth token ``sandbox``, our number +15005550006); flags override them for a real setup.
``--aliyun-token`` posts an Aliyun up-link push instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from html import unescape

from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_NUMBER, SANDBOX_PUBLIC_BASE
from gateway.cli import SIMULATE_HELP, command_group


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sms = command_group(sub, "simulate", SIMULATE_HELP).add_parser(
        "sms", help="send a text as a citizen (signed Twilio webhook)"
    )
    sms.add_argument("text", help="the message body")
    sms.add_argument("--from", dest="from_", default="+8613812345678", help="the citizen's number")
    sms.add_argument("--to", default=SANDBOX_NUMBER, help="our number")
    sms.add_argument("--gateway", default=SANDBOX_PUBLIC_BASE, help="where to post (default %(default)s)")
    sms.add_argument(
        "--public-base", default=None, help="URL Twilio would sign (behind a proxy); default --gateway"
    )
    sms.add_argument("--path", default="/sms/twilio", help="webhook path (default %(default)s)")
    sms.add_argument("--account-sid", default=SANDBOX_ACCOUNT_SID)
    sms.add_argument(
        "--auth-token", default=None, help="default: env SULAI_TWILIO_AUTH_TOKEN, else the sandbox token"
    )
    sms.add_argument("--message-sid", default=None, help="fixed MessageSid (to try a provider retry)")
    sms.add_argument(
        "--aliyun-token", default=None, help="post an Aliyun up-link push to /sms/aliyun instead"
    )
    sms.set_defaults(func=_cmd_simulate_sms)


def _cmd_simulate_sms(args: argparse.Namespace) -> int:
    import aiohttp

    try:
        return asyncio.run(_simulate(args))
    except aiohttp.ClientConnectionError as exc:
        print(f"cannot reach the gateway at {args.gateway}: {exc} (is `sulai serve --sandbox` running?)")
        return 2


async def _simulate(args: argparse.Namespace) -> int:
    from channels.sms.simulator import TwilioSimulator, aliyun_push, post_aliyun

    if args.aliyun_token:
        url = f"{args.gateway.rstrip('/')}/sms/aliyun?token={args.aliyun_token}"
        status, body = await post_aliyun(url, [aliyun_push(args.from_, args.text)])
        print(f"HTTP {status} {body}")
        return 0 if status == 200 else 1
    token = args.auth_token or os.environ.get("SULAI_TWILIO_AUTH_TOKEN") or SANDBOX_AUTH_TOKEN
    sim = TwilioSimulator(args.gateway, args.account_sid, token, args.to, args.public_base, args.path)
    status, body = await sim.text(args.from_, args.text, args.message_sid)
    print(f"HTTP {status}")
    replies = [unescape(m) for m in re.findall(r"<Message>(.*?)</Message>", body, re.S)]
    for reply in replies:
        print(reply)
    if status != 200:
        print(body.strip())
    elif not replies:
        print("(no inline reply: it comes through the outbox)")
    return 0 if status == 200 else 1
