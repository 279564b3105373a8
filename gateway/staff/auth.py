"""Staff members and their bearer tokens.

A token is shown once, when it is created (``sulai staff add``); only its SHA-256 is stored, so a
copy of the database does not hand out working tokens. A token is long and random, which is why
a plain (unsalted) hash is enough: there is nothing to brute-force. Revoking marks the member and
drops the hash, so the token stops working at once on every process.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from store import keys

TOKEN_PREFIX = "sulai_"


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, manages staff and units
    DISPATCHER = "dispatcher"  # 交办: accept, reject, assign, transfer, re-dispatch, create on behalf
    UNIT = "unit"  # 承办单位: only tickets assigned to their own unit
    SUPERVISOR = "supervisor"  # 督查: reads everything, comments, escalates
    GRIDWORKER = "gridworker"  # 网格员: enters offline requests, sees what they entered
    VIEWER = "viewer"  # statistics only


@dataclass(frozen=True, slots=True)
class Staff:
    id: str
    name: str
    role: Role
    unit: str  # the unit a ``unit`` member belongs to; empty otherwise
    created: float
    revoked: bool = False

    @property
    def actor(self) -> str:
        """How the member appears in ticket timelines."""
        return f"staff:{self.id}"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": str(self.role),
            "unit": self.unit,
            "created": self.created,
            "revoked": self.revoked,
        }


class StaffError(ValueError):
    """A staff member that cannot be created as asked (unknown role, unit missing …)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _decode(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _staff_from_hash(staff_id: str, raw: dict[Any, Any]) -> Staff:
    data = {_decode(k): _decode(v) for k, v in raw.items()}
    return Staff(
        id=staff_id,
        name=data.get("name", ""),
        role=Role(data.get("role", "viewer")),
        unit=data.get("unit", ""),
        created=float(data.get("created", "0") or 0),
        revoked=data.get("revoked", "") == "1",
    )


async def create_staff(
    redis: aioredis.Redis, tenant: str, name: str, role: str, unit: str = "", *, now: float
) -> tuple[Staff, str]:
    """Create a staff member; returns it with its token (the only time the token is visible)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise StaffError("name must be 1-100 characters")
    try:
        the_role = Role(role)
    except ValueError:
        raise StaffError(f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}") from None
    unit = unit.strip()
    if the_role is Role.UNIT and not unit:
        raise StaffError("a unit member needs --unit (the unit whose tickets they handle)")
    if "{" in unit or "}" in unit or len(unit) > 100:
        raise StaffError("unit must be at most 100 characters, without braces")
    staff_id = "st" + secrets.token_hex(5)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    staff = Staff(id=staff_id, name=name, role=the_role, unit=unit, created=now)
    digest = token_hash(token)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.staff(tenant, staff_id),
            mapping={
                "name": name,
                "role": the_role.value,
                "unit": unit,
                "created": repr(now),
                "revoked": "0",
                "token_hash": digest,
            },
        )
        pipe.hset(keys.staff_tokens(tenant), digest, staff_id)
        pipe.zadd(keys.staff_index(tenant), {staff_id: now})
        await pipe.execute()
    return staff, token


async def load_staff(redis: aioredis.Redis, tenant: str, staff_id: str) -> Staff | None:
    if not staff_id or "{" in staff_id or "}" in staff_id:
        return None
    raw = await redis.hgetall(keys.staff(tenant, staff_id))
    return _staff_from_hash(staff_id, raw) if raw else None


async def list_staff(redis: aioredis.Redis, tenant: str) -> list[Staff]:
    ids = [_decode(i) for i in await redis.zrange(keys.staff_index(tenant), 0, -1)]
    found = [await load_staff(redis, tenant, i) for i in ids]
    return [s for s in found if s is not None]


async def revoke_staff(redis: aioredis.Redis, tenant: str, staff_id: str) -> bool:
    """Revoke a member's token. False when no such member exists."""
    key = keys.staff(tenant, staff_id) if "{" not in staff_id and "}" not in staff_id else ""
    if not key or not await redis.exists(key):
        return False
    digest = _decode(await redis.hget(key, "token_hash"))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, "revoked", "1")
        if digest:
            pipe.hdel(keys.staff_tokens(tenant), digest)
        await pipe.execute()
    return True


async def authenticate(redis: aioredis.Redis, tenant: str, authorization: str | None) -> Staff | None:
    """The staff member behind an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    staff_id = _decode(await redis.hget(keys.staff_tokens(tenant), token_hash(token)))
    if not staff_id:
        return None
    staff = await load_staff(redis, tenant, staff_id)
    if staff is None or staff.revoked:
        return None
    return staff
