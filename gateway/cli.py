"""The ``sulai`` command: serve, check-config, version, and the channel and staff commands.

``sulai serve`` with no config file runs on DESIGN.md's defaults with the embedded Valkey and
prints the addresses it listens on.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from gateway.config import ConfigError, Settings, load_config

VERSION = "0.1.0"
ROLES = ("web", "staff", "smtp", "imap", "worker")

# Sub-command modules contributed by the channel and staff packages; each has add_commands(sub).
COMMAND_MODULES = ("gateway.cli_wechat", "gateway.cli_sms", "gateway.cli_email", "gateway.cli_staff")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, default=None, help="TOML config file (default: ./config.toml if present)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (default ./data)")


def command_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-command group ``name`` (``simulate``, ``wechat`` …) several modules add to:
    argparse refuses a second parser of the same name, so the first one's group is reused."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"sub-command {name!r} exists but has no sub-commands")


SIMULATE_HELP = "send messages to a running gateway the way a provider or a citizen does"


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Load the config named by --config, or ./config.toml when present, then apply --data-dir."""
    path = args.config
    if path is None and Path("config.toml").exists():
        path = Path("config.toml")
    settings = load_config(path)
    if getattr(args, "data_dir", None) is not None:
        from dataclasses import replace

        settings = replace(settings, data_dir=args.data_dir)
    return settings


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runtime import serve

    settings = resolve_settings(args)
    roles = set(args.role or ROLES)
    # uvloop: libuv's event loop roughly halves the per-request cost of aiohttp and redis-py.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings, roles=roles, sandbox=args.sandbox))


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.runtime import check_channel_settings

    settings = resolve_settings(args)
    check_channel_settings(settings)
    print(f"config OK ({settings.source})")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"sulai {VERSION}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sulai", description="速来办 Sulai citizen-request gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (all roles in one process by default)")
    add_config_argument(serve)
    serve.add_argument(
        "--role", action="append", choices=ROLES, help="run only this role (repeatable); default: all"
    )
    serve.add_argument(
        "--sandbox", action="store_true", help="use loopback fakes of WeChat, Twilio and the mail relay"
    )
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check-config", help="load and validate the configuration, then exit")
    add_config_argument(check)
    check.set_defaults(func=_cmd_check_config)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"sulai: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
