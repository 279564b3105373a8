"""WeChat commands: ``simulate wechat``, ``wechat qrcode``, ``wechat menu``.

``sulai simulate wechat --openid o123 "路灯坏了"`` pushes a signed (optionally encrypted) message
to the running gateway like WeChat does and prints the passive reply. ``sulai wechat qrcode``
creates a parametric QR code for an entry point and writes it as a PNG; ``sulai wechat menu``
sets the account menu from config. Without a ``[wechat]`` table the sandbox account is used; its
fake API URL is read from ``<data-dir>/sandbox/wechat-api.url`` (written by ``serve --sandbox``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from channels.wechat.settings import Account, WeChatSettings, parse_settings, sandbox_settings
from gateway.cli import SIMULATE_HELP, command_group


def _common(parser: argparse.ArgumentParser) -> None:
    from gateway.cli import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--account", default=None, help="account name from [wechat] (default: the first)")


def add_commands(sub: Any) -> None:
    simulate = command_group(sub, "simulate", SIMULATE_HELP)
    sim = simulate.add_parser("wechat", help="push a signed WeChat message or event and print the reply")
    _common(sim)
    sim.add_argument("--openid", default="o123", help="the simulated citizen's openid")
    sim.add_argument("--mode", choices=("plaintext", "compatible", "safe"), default=None)
    sim.add_argument("--url", default=None, help="webhook URL (default: public base URL + account path)")
    sim.add_argument(
        "--event", choices=("subscribe", "scan", "click", "unsubscribe"), default=None, help="push an event"
    )
    sim.add_argument("--scene", default=None, help="QR scene for subscribe/scan, e.g. grid:0421")
    sim.add_argument("--key", default="", help="menu key for click")
    sim.add_argument("text", nargs="?", default="", help="the message text")
    sim.set_defaults(func=_cmd_simulate)

    wechat = sub.add_parser("wechat", help="WeChat account administration")
    group = wechat.add_subparsers(dest="wechat_command", required=True, metavar="ACTION")
    qr = group.add_parser("qrcode", help="create a parametric QR code for an entry point")
    _common(qr)
    qr.add_argument("--scene", required=True, help="scene string, e.g. grid:0421, enterprise, centre:east")
    span = qr.add_mutually_exclusive_group()
    span.add_argument(
        "--permanent", action="store_true", help="a permanent code (at most 100 000 per account)"
    )
    span.add_argument("--days", type=int, default=30, help="days a temporary code lasts (1–30, default 30)")
    qr.add_argument("--out", type=Path, default=None, help="PNG file to write (default: qr-<scene>.png)")
    qr.add_argument("--api-base", default=None, help="WeChat API base URL (default from config/sandbox)")
    qr.set_defaults(func=_cmd_qrcode)
    menu = group.add_parser("menu", help="set the account menu from [wechat.menu]")
    _common(menu)
    menu.add_argument("--api-base", default=None, help="WeChat API base URL (default from config/sandbox)")
    menu.set_defaults(func=_cmd_menu)


def _load(args: argparse.Namespace) -> tuple[Any, WeChatSettings, Account]:
    from gateway.cli import resolve_settings
    from gateway.config import ConfigError

    settings = resolve_settings(args)
    if settings.wechat.get("accounts"):
        try:
            wechat = parse_settings(settings.wechat, "wechat")
        except ValueError as exc:
            raise ConfigError("wechat", str(exc)) from None
    else:
        url_file = settings.data_dir / "sandbox" / "wechat-api.url"
        api = url_file.read_text(encoding="utf-8").strip() if url_file.exists() else "http://127.0.0.1:0"
        wechat = sandbox_settings(settings.data_dir, api)
    accounts = [a for a in wechat.accounts if args.account in (None, a.name)]
    if not accounts:
        raise ConfigError("--account", f"one of {', '.join(a.name for a in wechat.accounts)}", args.account)
    return settings, wechat, accounts[0]


def _cmd_simulate(args: argparse.Namespace) -> int:
    from channels.wechat.simulator import WeChatSimulator

    settings, _wechat, account = _load(args)
    mode = args.mode or ("safe" if account.mode == "safe" else "plaintext")
    sim = WeChatSimulator(
        args.url or settings.public_base_url + account.path,
        token=account.token,
        appid=account.appid,
        account_id=account.account_id,
        encoding_aes_key=account.encoding_aes_key,
        mode=mode,
    )
    if args.event == "subscribe":
        xml = sim.subscribe(args.openid, args.scene)
    elif args.event == "scan":
        xml = sim.scan(args.openid, args.scene or "")
    elif args.event == "click":
        xml = sim.click(args.openid, args.key)
    elif args.event == "unsubscribe":
        xml = sim.unsubscribe(args.openid)
    elif args.text:
        xml = sim.text(args.openid, args.text)
    else:
        print("sulai: give the message text or --event", file=sys.stderr)
        return 2
    reply = asyncio.run(sim.push(xml))
    if reply.status != 200:
        print(f"HTTP {reply.status}: {reply.body.decode(errors='replace')}", file=sys.stderr)
        return 1
    print(reply.text if reply.text is not None else "(no passive reply; the answer comes as a message)")
    return 0


async def _with_api(wechat: WeChatSettings, account: Account, base: str | None, work: Any) -> Any:
    import aiohttp

    from channels.wechat.admin import TokenMemory
    from channels.wechat.api import WeChatApi

    async with aiohttp.ClientSession() as session:
        api = WeChatApi(
            session,
            base or wechat.api_base,
            tenant=account.tenant,
            appid=account.appid,
            secret=account.secret,
            tokens=TokenMemory(),
            use_stable_token=True,  # never invalidates the token the gateway processes share
        )
        return await work(api)


def _cmd_qrcode(args: argparse.Namespace) -> int:
    from channels.wechat.admin import create_qrcode, write_png
    from channels.wechat.api import WeChatApiError

    settings, wechat, account = _load(args)
    expire = None if args.permanent else args.days * 86400
    record = settings.data_dir / "wechat" / "qrcodes.jsonl"
    try:
        entry = asyncio.run(
            _with_api(
                wechat, account, args.api_base, lambda api: create_qrcode(api, args.scene, expire, record)
            )
        )
    except (ValueError, WeChatApiError) as exc:
        print(f"sulai: {exc}", file=sys.stderr)
        return 1
    out = args.out or Path(f"qr-{args.scene.replace(':', '-')}.png")
    write_png(entry["url"], out)
    print(f"scene {args.scene}: ticket {entry['ticket']}, url {entry['url']}")
    print(out)
    return 0


def _cmd_menu(args: argparse.Namespace) -> int:
    from channels.wechat.admin import set_menu
    from channels.wechat.api import WeChatApiError

    _settings, wechat, account = _load(args)
    try:
        asyncio.run(_with_api(wechat, account, args.api_base, lambda api: set_menu(api, wechat.menu)))
    except (ValueError, WeChatApiError) as exc:
        print(f"sulai: {exc}", file=sys.stderr)
        return 1
    print(f"menu set for {account.name}: {len(wechat.menu)} buttons")
    return 0
