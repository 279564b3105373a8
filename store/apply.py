"""Build and run the one atomic write script (scripts/apply.lua) shared by turns and staff actions.

A :class:`Write` collects everything one cause changes — a new ticket, ticket changes, outbox
entries, timers, address facts, tenant-level sorted-set and list ops, the conversation state and
the idempotency mark — and
:func:`run_write` applies it in ONE ``EVALSHA``: either all of it happens or none of it, and a
version conflict, a replay or an illegal status move is reported before anything is written.

A new ticket's id is drawn inside the script (daily counter + Luhn) so creation costs no extra
round trip; wherever the id must appear (reply, state, outbox entries, timer payloads, events,
ticket changes) the caller writes :data:`TICKET_ID_PLACEHOLDER` and the script substitutes it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis

from channels.base import MediaRef, Outbound
from store import keys, mux
from store.model import (
    OPEN_STATUSES,
    PROTECTED_FIELDS,
    TRANSITIONS,
    AddEvent,
    CountDay,
    ExtendField,
    IllegalTransition,
    IncrField,
    NewTicket,
    QueueAdd,
    QueueName,
    QueueRemove,
    SetFields,
    SetStatus,
    TicketChange,
    TicketStatus,
    encode_field,
    media_to_json,
    new_ticket_fields,
)
from store.outbox_codec import Envelope
from store.ticketid import new_query_code

# ASCII and JSON-safe, so it survives json.dumps of states, replies and outbox entries unchanged.
TICKET_ID_PLACEHOLDER = "@@SULAI:TICKET_ID@@"
_UNIT_PLACEHOLDER = "@@SULAI:UNIT@@"

# Per-day counters bumped when a ticket enters a status.
STATUS_COUNTERS: Mapping[TicketStatus, str] = {
    TicketStatus.ACCEPTED: "accepted",
    TicketStatus.ASSIGNED: "assigned",
    TicketStatus.REPLIED: "replied",
    TicketStatus.RESOLVED: "resolved",
    TicketStatus.CLOSED: "closed",
    TicketStatus.REJECTED: "rejected",
    TicketStatus.REDISPATCHED: "redispatched",
}
# A unit's open work (keys.index_unit_open): the statuses in which the ticket is on its desk.
UNIT_WORK_STATUSES = (TicketStatus.ASSIGNED, TicketStatus.REPLIED)
# orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes; with this
# option it also turns non-string dict keys into strings as json does, instead of refusing them.
_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS
SEQ_TTL = 2 * 24 * 3600  # keys.ticket_seq: nobody draws from a day's counter after it ends


@dataclass(frozen=True, slots=True)
class TenantIds:
    """What the store needs to know about a tenant: its ticket prefix and local time zone."""

    prefix: str = "SN"
    timezone: str = "Asia/Shanghai"

    def local_day(self, now: float) -> dt.date:
        return dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date()


class WriteConflict(Exception):
    """The conversation changed since it was read (another turn won): reload and step again."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"conversation version is now {current_version}")
        self.current_version = current_version


class StaleTicket(WriteConflict):
    """A guarded ticket changed since it was read (:attr:`Write.guards`): reload and decide again."""

    def __init__(self, ticket_id: str) -> None:
        Exception.__init__(self, f"ticket {ticket_id} changed since it was read")
        self.current_version = -1
        self.ticket_id = ticket_id


class TicketNotFound(KeyError):
    def __init__(self, ticket_id: str) -> None:
        super().__init__(ticket_id)
        self.ticket_id = ticket_id


@dataclass(frozen=True, slots=True)
class TimerSet:
    timer_id: str
    due: float  # unix seconds
    payload: str  # JSON; may contain TICKET_ID_PLACEHOLDER


@dataclass
class Write:
    """Everything one cause changes. Build it, then :func:`run_write` it."""

    tenant: str
    actor: str = "system"
    new_ticket: NewTicket | None = None
    changes: list[TicketChange] = field(default_factory=list)
    outbox: list[Outbound] = field(default_factory=list)
    timers_set: list[TimerSet] = field(default_factory=list)
    timers_cancel: list[str] = field(default_factory=list)
    address_state: dict[str, Mapping[str, str]] = field(default_factory=dict)  # address -> fields
    links: dict[str, Sequence[str]] = field(default_factory=dict)  # address -> other addresses
    conversation: tuple[str, int, bytes] | None = None  # (address, expected version, new state)
    idempotency: tuple[str, bytes] | None = None  # (external id, stored reply)
    # ticket id -> (updated_at as stored, number of events) seen when the decision was taken: the
    # write fails with StaleTicket if either moved (the optimistic check of staff actions).
    guards: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Tenant-level ops not tied to a ticket (e.g. the hand-off queue and log):
    # (key, member, score): ZADD NX (a member already there keeps its score); score None: ZREM.
    zsets: list[tuple[str, str, float | None]] = field(default_factory=list)
    # (key, item, cap, ttl): RPUSH the item, keep the last ``cap`` items, EXPIRE ttl when > 0.
    lists: list[tuple[str, str, int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriteResult:
    ticket_id: str | None  # the id drawn for the new ticket
    version: int | None  # the conversation's new version
    skipped: tuple[str, ...] = ()  # "<ticket>:<status>" non-strict moves that were not legal
    duplicate_reply: bytes | None = None  # set when the idempotency mark already existed


def load_script_source() -> str:
    src = resources.files("store").joinpath("scripts/apply.lua").read_text(encoding="utf-8")
    table = {s.value: sorted(t.value for t in moves) for s, moves in TRANSITIONS.items()}
    return src.replace("__TRANSITIONS__", json.dumps(table, separators=(",", ":")))


def queue_key(tenant: str, queue: QueueName, owner: str = "") -> str:
    """The ZSET behind a :class:`store.model.QueueAdd` / :class:`QueueRemove` queue name."""
    if queue == "callbacks":
        return keys.callback_list(tenant)
    if queue == "supervision":
        return keys.supervision_queue(tenant)
    if queue == "entered_by" and owner:
        return keys.index_entered_by(tenant, owner)
    raise ValueError(f"unknown queue {queue!r} (owner {owner!r})")


def _change_spec(change: TicketChange, tenant: str = "") -> dict[str, Any]:
    if isinstance(change, SetStatus):
        payload = dict(change.payload)
        return {
            "op": "status",
            "t": change.ticket_id,
            "to": change.to.value,
            "actor": change.actor,
            "payload": payload,
            "strict": change.strict,
        }
    if isinstance(change, SetFields):
        bad = PROTECTED_FIELDS & set(change.values)
        if bad:
            raise ValueError(f"fields {sorted(bad)} cannot be set directly")
        values = {k: encode_field(k, v) for k, v in change.values.items()}
        if "unit" in values:
            keys.index_unit("t", values["unit"])  # refuses braces before Lua builds the key
        return {"op": "set", "t": change.ticket_id, "values": values}
    if isinstance(change, ExtendField):
        items = [media_to_json(i) if isinstance(i, MediaRef) else i for i in change.items]
        return {
            "op": "extend",
            "t": change.ticket_id,
            "name": change.name,
            "items": items,
            "unique": change.unique,
        }
    if isinstance(change, IncrField):
        return {"op": "incr", "t": change.ticket_id, "name": change.name, "by": change.by}
    if isinstance(change, AddEvent):
        event = orjson.dumps(change.event.to_json(), option=_ORJSON_OPTS).decode()
        return {"op": "event", "t": change.ticket_id, "event": event}
    if isinstance(change, CountDay):
        return {"op": "count", "t": "", "name": change.name, "by": change.by}
    if isinstance(change, QueueAdd):
        key = queue_key(tenant, change.queue, change.owner)
        return {"op": "zadd", "t": change.ticket_id, "key": key, "score": repr(float(change.score))}
    if isinstance(change, QueueRemove):
        return {"op": "zrem", "t": change.ticket_id, "key": queue_key(tenant, change.queue, change.owner)}
    raise TypeError(f"unknown ticket change {change!r}")


def _create_spec(w: Write, ids: TenantIds, now: float, now_s: str) -> dict[str, Any]:
    assert w.new_ticket is not None
    new, tenant, ph = w.new_ticket, w.tenant, TICKET_ID_PLACEHOLDER
    day = ids.local_day(now)
    query_code = new.query_code or new_query_code()
    fields = new_ticket_fields(new, ticket_id=ph, tenant=tenant, query_code=query_code, now=now)
    fields["created_at"] = fields["updated_at"] = now_s
    index_keys = [keys.index_created(tenant), keys.index_status(tenant, TicketStatus.NEW.value)]
    index_keys += [keys.index_citizen(tenant, a) for a in new.addresses]
    counters = ["received", f"received:{new.channel}", f"received:{new.intake_type}"]
    return {
        "seq_key": keys.ticket_seq(tenant, day.strftime("%y%m%d")),
        "seq_ttl": SEQ_TTL,
        "prefix": ids.prefix,
        "date": day.strftime("%y%m%d"),
        "fields": fields,
        "ticket_key": keys.ticket(tenant, ph),
        "events_key": keys.ticket_events(tenant, ph),
        "index_keys": index_keys,
        "counters": counters,
        "actor": w.actor,
        "event_payload": {
            "channel": new.channel,
            "entry_point": new.entry_point,
            "intake_type": new.intake_type,
        },
    }


@functools.lru_cache(maxsize=256)
def _tenant_part(tenant: str) -> dict[str, Any]:
    """The part of every spec that depends on the tenant only (built once, never mutated)."""
    return {
        "status_keys": {s.value: keys.index_status(tenant, s.value) for s in TicketStatus},
        "status_counters": {s.value: name for s, name in STATUS_COUNTERS.items()},
        "unit_tpl": keys.index_unit(tenant, _UNIT_PLACEHOLDER),
        "unit_ph": _UNIT_PLACEHOLDER,
        "derived": {
            "unit_open_tpl": keys.index_unit_open(tenant, _UNIT_PLACEHOLDER),
            "deadline_key": keys.index_deadline(tenant),
            "work": {s.value: 1 for s in UNIT_WORK_STATUSES},
            "open": {s.value: 1 for s in OPEN_STATUSES},
        },
        "day_ttl": keys.DAY_COUNTER_TTL,
        "outbox_key": keys.outbox(tenant),
    }


def build_spec(w: Write, ids: TenantIds, now: float) -> tuple[list[str], list[str | bytes]]:
    """KEYS and ARGV of the script for one write."""
    tenant, now_s = w.tenant, repr(now)
    ops = [_change_spec(c, tenant) for c in w.changes]
    ticket_ids = {op["t"] for op in ops if op["t"] and op["t"] != TICKET_ID_PLACEHOLDER}
    spec: dict[str, Any] = {
        "ph": TICKET_ID_PLACEHOLDER,
        "now_s": now_s,
        "ops": ops,
        "tickets": {
            t: {"key": keys.ticket(tenant, t), "events_key": keys.ticket_events(tenant, t)}
            for t in ticket_ids
        },
        **_tenant_part(tenant),
        "day_key": keys.counters_day(tenant, ids.local_day(now).strftime("%Y%m%d")),
        "outbox": [Envelope(ob).to_json() for ob in w.outbox],
        "hsets": [
            [keys.address_state(tenant, a), dict(f), keys.CONVERSATION_TTL]
            for a, f in w.address_state.items()
        ],
        "sadds": [
            [keys.citizen_addresses(tenant, a), [o for o in others if o != a], keys.CONVERSATION_TTL]
            for a, others in w.links.items()
        ],
    }
    if w.zsets:
        spec["zsets"] = [[k, m, "" if score is None else repr(float(score))] for k, m, score in w.zsets]
    if w.lists:
        spec["lists"] = [[k, item, cap, ttl] for k, item, cap, ttl in w.lists]
    if w.new_ticket is not None:
        spec["create"] = _create_spec(w, ids, now, now_s)
        addresses = w.new_ticket.addresses
        if len(addresses) > 1:  # the citizen's other addresses, for fallback delivery
            spec["sadds"] += [
                [keys.citizen_addresses(tenant, a), [o for o in addresses if o != a], keys.CONVERSATION_TTL]
                for a in addresses
            ]
        spec["tickets"][TICKET_ID_PLACEHOLDER] = {
            "key": keys.ticket(tenant, TICKET_ID_PLACEHOLDER),
            "events_key": keys.ticket_events(tenant, TICKET_ID_PLACEHOLDER),
        }
    if w.guards:
        spec["guards"] = [
            [t, keys.ticket(tenant, t), keys.ticket_events(tenant, t), updated, n_events]
            for t, (updated, n_events) in w.guards.items()
        ]
    if w.timers_set or w.timers_cancel:
        spec["timers"] = {
            "key": keys.timers(tenant),
            "payload_key": keys.timer_payload(tenant),
            "set": [[t.timer_id, t.due, t.payload] for t in w.timers_set],
            "cancel": list(w.timers_cancel),
        }
    script_keys: list[str] = []
    state: bytes = b""
    reply: bytes = b""
    if w.conversation is not None:
        address, expected, state = w.conversation
        conv_key = keys.conversation(tenant, address)
        spec["conv"] = {"key": conv_key, "expected": expected, "ttl": keys.CONVERSATION_TTL}
        script_keys.append(conv_key)
    if w.idempotency is not None:
        external_id, reply = w.idempotency
        idem_key = keys.idempotency(tenant, external_id)
        spec["idem"] = {"key": idem_key, "ttl": keys.IDEMPOTENCY_TTL}
        script_keys.append(idem_key)
    if not script_keys:
        script_keys.append(keys.index_created(tenant))  # any key of the tenant routes the call
    # orjson: the spec is the largest encode of a turn; compact UTF-8 like json.dumps(ensure_ascii=False).
    argv: list[str | bytes] = [orjson.dumps(spec, option=_ORJSON_OPTS), state, reply]
    return script_keys, argv


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_result(raw: Sequence[Any]) -> WriteResult:
    kind = _text(raw[0])
    if kind == "ok":
        skipped_raw = json.loads(_text(raw[3]))
        skipped = tuple(skipped_raw) if isinstance(skipped_raw, list) else ()
        return WriteResult(
            ticket_id=_text(raw[1]) or None,
            version=int(_text(raw[2])) if _text(raw[2]) else None,
            skipped=skipped,
        )
    if kind == "dup":
        stored = raw[1]
        return WriteResult(
            None, None, duplicate_reply=stored if isinstance(stored, bytes) else str(stored).encode()
        )
    if kind == "conflict":
        raise WriteConflict(int(_text(raw[1])))
    if kind == "stale":
        raise StaleTicket(_text(raw[1]))
    if kind == "missing":
        raise TicketNotFound(_text(raw[1]))
    if kind == "illegal":
        raise IllegalTransition(_text(raw[1]), TicketStatus(_text(raw[2])), TicketStatus(_text(raw[3])))
    raise RuntimeError(f"unexpected reply from apply.lua: {raw!r}")


class Applier:
    """Holds the registered script; one per Redis client."""

    def __init__(self, redis: aioredis.Redis, tenants: Mapping[str, TenantIds] | None = None) -> None:
        self._redis = redis
        self._tenants = dict(tenants) if tenants is not None else None
        self._script = mux.register_script(redis, load_script_source())

    def tenant_ids(self, tenant: str) -> TenantIds:
        if self._tenants is None:
            return TenantIds()
        try:
            return self._tenants[tenant]
        except KeyError:
            raise KeyError(f"unknown tenant {tenant!r}") from None

    async def run(self, w: Write, now: float) -> WriteResult:
        script_keys, argv = build_spec(w, self.tenant_ids(w.tenant), now)
        raw = await self._script(keys=script_keys, args=argv)
        return parse_result(raw)
