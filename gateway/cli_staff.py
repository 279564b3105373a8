"""``sulai staff add|list|revoke``: manage staff members and their bearer tokens.

``add`` prints the new token alone on its last line (DESIGN.md's sandbox contract), so scripts
can take it with ``tail -n1``. The token is shown only this once; only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from gateway.staff.auth import Role, StaffError, create_staff, list_staff, revoke_staff


async def _with_redis(args: argparse.Namespace, work: Callable[[aioredis.Redis, str], Awaitable[int]]) -> int:
    from gateway.cli import resolve_settings
    from gateway.runtime import start_redis

    settings = resolve_settings(args)
    redis, embedded = await start_redis(settings)
    try:
        return await work(redis, settings.tenant.id)
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()


def _cmd_add(args: argparse.Namespace) -> int:
    async def work(redis: aioredis.Redis, tenant: str) -> int:
        try:
            staff, token = await create_staff(
                redis, tenant, args.name, args.role, args.unit or "", now=time.time()
            )
        except StaffError as exc:
            print(f"sulai staff add: {exc}", file=sys.stderr)
            return 2
        unit = f" unit={staff.unit}" if staff.unit else ""
        print(f"created staff {staff.id} name={staff.name} role={staff.role}{unit}")
        print("token (shown once; store it now):")
        print(token)
        return 0

    return asyncio.run(_with_redis(args, work))


def _cmd_list(args: argparse.Namespace) -> int:
    async def work(redis: aioredis.Redis, tenant: str) -> int:
        for s in await list_staff(redis, tenant):
            state = "revoked" if s.revoked else "active"
            print(f"{s.id}\t{s.name}\t{s.role}\t{s.unit or '-'}\t{state}")
        return 0

    return asyncio.run(_with_redis(args, work))


def _cmd_revoke(args: argparse.Namespace) -> int:
    async def work(redis: aioredis.Redis, tenant: str) -> int:
        if not await revoke_staff(redis, tenant, args.id):
            print(f"sulai staff revoke: no staff member {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0

    return asyncio.run(_with_redis(args, work))


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from gateway.cli import add_config_argument

    staff = subparsers.add_parser("staff", help="manage staff members and their API tokens")
    sub = staff.add_subparsers(dest="staff_command", required=True)
    add = sub.add_parser("add", help="create a staff member; prints the token on the last line")
    add.add_argument("--name", required=True, help="the member's name, e.g. 张三")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--unit", default="", help="the unit (承办单位) a 'unit' member works for")
    add_config_argument(add)
    add.set_defaults(func=_cmd_add)
    lst = sub.add_parser("list", help="list staff members (tokens are never shown again)")
    add_config_argument(lst)
    lst.set_defaults(func=_cmd_list)
    rev = sub.add_parser("revoke", help="revoke a member's token")
    rev.add_argument("id", help="staff id as shown by 'staff list'")
    add_config_argument(rev)
    rev.set_defaults(func=_cmd_revoke)
