"""Conversation turns (DESIGN.md "One turn at a time"): read state, run the engine, apply.

``load_turn`` reads the conversation (version + state) and the idempotency mark of the inbound in
ONE round trip; ``read_turn`` does the same and also takes the in-flight lock and reads the
tickets the turn may need (named by the state, decoded inside the script, or by the caller), so
intake's whole read is one round trip too; ``apply_turn`` writes everything the turn decided in ONE script call that fails
on a version conflict and turns a replay into "duplicate" with the stored reply. A turn that
files a ticket therefore costs two round trips. ``InflightLock`` covers the window in which a
provider's retry arrives while the first delivery is still being processed.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from channels.base import Outbound
from store import keys, mux
from store.apply import TICKET_ID_PLACEHOLDER, TimerSet, Write, WriteConflict
from store.casestore import CaseStore
from store.model import NewTicket, Ticket, TicketChange, ticket_from_hash

# Stands for the ticket id in the key template read_turn.lua fills in (keys are built by keys.py).
_ID_SLOT = "@@SULAI:ID@@"


@dataclass(frozen=True, slots=True)
class LoadedTurn:
    version: int  # 0 when there is no conversation yet
    state: bytes | None
    stored_reply: bytes | None  # set when this external id was already applied (a replay)


@dataclass(frozen=True, slots=True)
class TurnRead:
    """What :meth:`Turns.read_turn` found. ``tickets`` maps every id the script looked up to its
    ticket (None: no such ticket); ids it did not look up are absent."""

    version: int
    state: bytes | None
    stored_reply: bytes | None  # set on a replay: nothing else was read, no lock taken
    locked: bool  # False: another delivery of this inbound holds the in-flight lock
    tickets: dict[str, Ticket | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnWrite:
    """Everything one turn writes. Any string may contain TICKET_ID_PLACEHOLDER when
    ``new_ticket`` is set; the id drawn in the script replaces it everywhere."""

    tenant: str
    address: str
    expected_version: int
    new_state: bytes
    external_id: str
    stored_reply: bytes
    new_ticket: NewTicket | None = None
    ticket_changes: Sequence[TicketChange] = ()
    outbox: Sequence[Outbound] = ()
    timers_set: Sequence[TimerSet] = ()
    timers_cancel: Sequence[str] = ()
    address_state: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # address -> fields
    links: Mapping[str, Sequence[str]] = field(default_factory=dict)  # address -> other addresses
    actor: str = ""  # defaults to "citizen:<address>"
    zsets: Sequence[tuple[str, str, float | None]] = ()  # store.apply.Write.zsets
    lists: Sequence[tuple[str, str, int, int]] = ()  # store.apply.Write.lists


class ApplyOutcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the external id was applied before: nothing written
    CONFLICT = "conflict"  # another turn changed the conversation: reload and step again


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    reply: bytes | None = None  # the stored reply (placeholder substituted) when applied or duplicate
    ticket_id: str | None = None
    version: int | None = None  # new version when applied, current version on conflict
    skipped: tuple[str, ...] = ()


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """HGETALL's flat [field, value, …] as a script returns it, as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str | None) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) else value.encode()


class Turns:
    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.redis: aioredis.Redis = store.redis
        source = resources.files("store").joinpath("scripts/read_turn.lua").read_text(encoding="utf-8")
        self._read = mux.register_script(self.redis, source)

    async def read_turn(
        self,
        tenant: str,
        address: str,
        external_id: str,
        *,
        lock_token: str = "",
        lock_ttl_ms: int = 30_000,
        ticket_ids: Sequence[str] = (),
        recent_tickets: int = 0,
        never: Sequence[str] = (),
    ) -> TurnRead:
        """One round trip: version, state, stored reply, the in-flight lock (when ``lock_token``
        is set) and the tickets the turn may need — ``ticket_ids`` asked by the caller, then the
        state's last ``recent_tickets`` filed tickets, its current ticket, pending survey, pending
        staff question and the ticket awaiting a rating comment. Ids in ``never`` are not read."""
        script_keys = [
            keys.conversation(tenant, address),
            keys.idempotency(tenant, external_id),
            keys.inflight(tenant, external_id),
        ]
        args: list[str | int] = [
            lock_token,
            lock_ttl_ms,
            keys.ticket(tenant, _ID_SLOT),
            _ID_SLOT,
            recent_tickets,
            len(never),
            *never,
            *ticket_ids,
        ]
        version, state, stored, locked, ids, hashes = await self._read(keys=script_keys, args=args)
        tickets: dict[str, Ticket | None] = {}
        for raw_id, flat in zip(ids, hashes, strict=True):
            tickets[_str(raw_id)] = ticket_from_hash(_pairs(flat)) if flat else None
        return TurnRead(int(version), _bytes(state) or None, _bytes(stored), bool(locked), tickets)

    async def load_turn(self, tenant: str, address: str, external_id: str) -> LoadedTurn:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.conversation(tenant, address), ["version", "state"])
            pipe.get(keys.idempotency(tenant, external_id))
            (version, state), stored = await pipe.execute()
        return LoadedTurn(int(version or 0), _bytes(state), _bytes(stored))

    async def apply_turn(self, tw: TurnWrite) -> ApplyResult:
        write = Write(
            tenant=tw.tenant,
            actor=tw.actor or f"citizen:{tw.address}",
            new_ticket=tw.new_ticket,
            changes=list(tw.ticket_changes),
            outbox=list(tw.outbox),
            timers_set=list(tw.timers_set),
            timers_cancel=list(tw.timers_cancel),
            address_state={a: dict(f) for a, f in tw.address_state.items()},
            links=dict(tw.links),
            conversation=(tw.address, tw.expected_version, tw.new_state),
            idempotency=(tw.external_id, tw.stored_reply),
            zsets=list(tw.zsets),
            lists=list(tw.lists),
        )
        try:
            result = await self.store.apply(write)
        except WriteConflict as exc:
            return ApplyResult(ApplyOutcome.CONFLICT, version=exc.current_version)
        if result.duplicate_reply is not None:
            return ApplyResult(ApplyOutcome.DUPLICATE, reply=result.duplicate_reply)
        reply = tw.stored_reply
        if result.ticket_id:
            reply = reply.replace(TICKET_ID_PLACEHOLDER.encode(), result.ticket_id.encode())
        return ApplyResult(ApplyOutcome.APPLIED, reply, result.ticket_id, result.version, result.skipped)

    async def patch_conversation(
        self,
        tenant: str,
        address: str,
        fn: Callable[[bytes | None], bytes],
        *,
        extra: Write | None = None,
        attempts: int = 10,
    ) -> int:
        """Change a conversation from outside a turn (staff: a pending survey, a question to
        relay), bumping its version so a turn in flight retries on the new state. ``extra`` is
        applied in the same script (e.g. the survey's outbox entry). Returns the new version."""
        for _ in range(attempts):
            version, state = await self.redis.hmget(keys.conversation(tenant, address), ["version", "state"])
            write = extra if extra is not None else Write(tenant=tenant)
            write.conversation = (address, int(version or 0), fn(_bytes(state)))
            try:
                result = await self.store.apply(write)
            except WriteConflict:
                continue
            assert result.version is not None
            return result.version
        raise WriteConflict(-1)


class InflightLock:
    """``SET NX PX`` on keys.inflight: one holder per external id at a time. Release deletes
    only our own token (a lock that expired and was taken by another is left alone)."""

    _RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._release = redis.register_script(self._RELEASE)

    async def acquire(self, tenant: str, external_id: str, ttl_ms: int = 30_000) -> str | None:
        """A token when we got the lock, None when someone else holds it."""
        token = secrets.token_hex(8)
        ok = await self.redis.set(keys.inflight(tenant, external_id), token, nx=True, px=ttl_ms)
        return token if ok else None

    async def release(self, tenant: str, external_id: str, token: str) -> bool:
        return bool(await self._release(keys=[keys.inflight(tenant, external_id)], args=[token]))
