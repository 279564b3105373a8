"""The ticket model: statuses, the legal moves of the life cycle (DESIGN.md), and events.

A ticket is born ``new`` when the conversation files it (the draft lives in conversation state,
not here). Every change appends a :class:`TicketEvent`; the event log is the audit trail and the
timeline staff see.

```
new ─► accepted ─► assigned ─► replied ─► resolved ─► closed
 │        │          ▲   │ transfer          │  ▲ satisfied rating, or survey expired
 │        └► rejected└───┘                   │
 └► assigned (dispatcher skips accept)   unsatisfied ─► redispatched ─► assigned (attempt n+1)
```
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from channels.base import MediaRef


class TicketStatus(enum.StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    REPLIED = "replied"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REJECTED = "rejected"
    REDISPATCHED = "redispatched"


S = TicketStatus

# status -> statuses it may move to. Reopening (staff, or a citizen mailing a closed ticket)
# goes back to ACCEPTED so the dispatcher sees it again.
TRANSITIONS: Mapping[TicketStatus, frozenset[TicketStatus]] = MappingProxyType(
    {
        S.NEW: frozenset({S.ACCEPTED, S.ASSIGNED, S.REJECTED}),
        S.ACCEPTED: frozenset({S.ASSIGNED, S.REJECTED}),
        S.ASSIGNED: frozenset({S.ASSIGNED, S.REPLIED, S.RESOLVED}),
        S.REPLIED: frozenset({S.ASSIGNED, S.REPLIED, S.RESOLVED}),
        S.RESOLVED: frozenset({S.CLOSED, S.REDISPATCHED, S.ACCEPTED}),
        S.REDISPATCHED: frozenset({S.ASSIGNED, S.REJECTED}),
        S.CLOSED: frozenset({S.ACCEPTED}),
        S.REJECTED: frozenset({S.ACCEPTED}),
    }
)

OPEN_STATUSES = frozenset({S.NEW, S.ACCEPTED, S.ASSIGNED, S.REPLIED, S.REDISPATCHED})
FINAL_STATUSES = frozenset({S.CLOSED, S.REJECTED})


class IllegalTransition(ValueError):
    """A status change the life cycle does not allow."""

    def __init__(self, ticket_id: str, current: TicketStatus, wanted: TicketStatus) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"ticket {ticket_id} is {current}; it cannot become {wanted} (allowed from {current}: {allowed})"
        )
        self.ticket_id = ticket_id
        self.current = current
        self.wanted = wanted


def can_move(current: TicketStatus, wanted: TicketStatus) -> bool:
    return wanted in TRANSITIONS[current]


def check_move(ticket_id: str, current: TicketStatus, wanted: TicketStatus) -> None:
    if not can_move(current, wanted):
        raise IllegalTransition(ticket_id, current, wanted)


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """One entry of a ticket's log: who did what, when, with what details."""

    kind: str  # created, status, note, reply, supplement, assigned, rating, delivery, merged …
    actor: str  # "citizen:<address>", "staff:<id>", "system"
    at: float  # unix seconds, UTC
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "actor": self.actor, "at": self.at, "payload": dict(self.payload)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TicketEvent:
        return cls(
            kind=str(data["kind"]),
            actor=str(data["actor"]),
            at=float(data["at"]),
            payload=dict(data.get("payload") or {}),
        )


# ---------------------------------------------------------------------------------------------
# The ticket record
#
# Stored as a Redis HASH (keys.ticket): scalar fields as plain strings (so Lua scripts can read
# ``status`` and ``unit`` without decoding), optional numbers as "" when unset, structured fields
# (lists, mappings, attachments) as JSON. ``ticket_to_hash``/``ticket_from_hash`` are the only
# codec; the Lua scripts only touch the scalar fields and the JSON lists they append to.

IntakeType = Literal["citizen", "enterprise"]

# Fields holding JSON lists / objects in the hash.
JSON_LIST_FIELDS = frozenset({"addresses", "attachments", "failed_units", "links"})
JSON_MAP_FIELDS = frozenset({"provenance"})
INT_FIELDS = frozenset({"attempts", "escalation"})
OPTIONAL_FLOAT_FIELDS = frozenset({"latitude", "longitude", "due_at", "reply_deadline"})


def media_to_json(ref: MediaRef) -> dict[str, Any]:
    return {
        "media_id": ref.media_id,
        "content_type": ref.content_type,
        "size": ref.size,
        "filename": ref.filename,
        "flagged": ref.flagged,
    }


def media_from_json(data: Mapping[str, Any]) -> MediaRef:
    return MediaRef(
        media_id=str(data["media_id"]),
        content_type=str(data.get("content_type", "application/octet-stream")),
        size=int(data.get("size", 0)),
        filename=str(data.get("filename", "")),
        flagged=bool(data.get("flagged", False)),
    )


@dataclass(frozen=True, slots=True)
class NewTicket:
    """What the creator of a ticket supplies (conversation intake, staff on a citizen's behalf).
    The store adds id, tenant, status, query code (when empty) and timestamps."""

    channel: str
    citizen: str  # the primary address: where status pushes go first
    description: str
    addresses: tuple[str, ...] = ()  # every known address of the citizen (citizen included)
    intake_type: IntakeType = "citizen"
    company: str = ""
    credit_code: str = ""
    category: str = ""
    location_text: str = ""
    latitude: float | None = None
    longitude: float | None = None
    phone: str = ""
    name: str = ""
    attachments: tuple[MediaRef, ...] = ()
    entry_point: str = ""
    reply_deadline: float | None = None
    language: str = "zh-CN"
    query_code: str = ""  # empty: the store draws one
    provenance: Mapping[str, str] = field(default_factory=dict)  # who entered it, grid, letter date …

    def __post_init__(self) -> None:
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))
        if self.citizen not in self.addresses:
            object.__setattr__(self, "addresses", (self.citizen, *self.addresses))


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    tenant: str
    status: TicketStatus
    channel: str
    citizen: str
    description: str
    query_code: str
    created_at: float
    updated_at: float
    addresses: tuple[str, ...] = ()
    intake_type: IntakeType = "citizen"
    company: str = ""
    credit_code: str = ""
    category: str = ""
    location_text: str = ""
    latitude: float | None = None
    longitude: float | None = None
    phone: str = ""
    name: str = ""
    attachments: tuple[MediaRef, ...] = ()
    entry_point: str = ""
    unit: str = ""
    due_at: float | None = None  # the unit's due date
    reply_deadline: float | None = None  # promised to the citizen
    rating: int | None = None
    attempts: int = 0  # dispatch attempts (redispatch makes n+1)
    failed_units: tuple[str, ...] = ()  # units whose answer was rated unsatisfied
    escalation: int = 0
    supervision: bool = False
    links: tuple[str, ...] = ()  # related ticket ids (merged, reopened as new, duplicates)
    language: str = "zh-CN"
    provenance: Mapping[str, str] = field(default_factory=dict)
    # Written by staff actions and the survey (gateway/staff); "" until then.
    resolution: str = ""  # the 办结 text the citizen received
    reject_reason: str = ""
    rating_comment: str = ""
    rating_state: str = ""  # "" | "pending" (survey asked) | "rated" | "not_rated" (expired)
    merged_into: str = ""  # the surviving ticket of a merged duplicate

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def encode_field(name: str, value: Any) -> str:
    """One ticket field as its hash string (see the codec note above)."""
    if name in JSON_LIST_FIELDS:
        items = [media_to_json(v) if isinstance(v, MediaRef) else v for v in value]
        return json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    if name in JSON_MAP_FIELDS:
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def new_ticket_fields(
    new: NewTicket, *, ticket_id: str, tenant: str, query_code: str, now: float
) -> dict[str, str]:
    """The hash of a freshly filed ticket."""
    values: dict[str, Any] = {
        "id": ticket_id,
        "tenant": tenant,
        "status": TicketStatus.NEW.value,
        "query_code": query_code,
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
        "escalation": 0,
    }
    for f in fields(NewTicket):
        if f.name != "query_code":
            values[f.name] = getattr(new, f.name)
    return {name: encode_field(name, value) for name, value in values.items()}


def ticket_to_hash(ticket: Ticket) -> dict[str, str]:
    return {f.name: encode_field(f.name, getattr(ticket, f.name)) for f in fields(Ticket)}


def _text(raw: Mapping[str, str], name: str) -> str:
    return raw.get(name, "")


def _opt_float(raw: Mapping[str, str], name: str) -> float | None:
    value = raw.get(name, "")
    return float(value) if value else None


def ticket_from_hash(data: Mapping[Any, Any]) -> Ticket:
    """Decode a ticket hash as read from Redis (bytes or str keys)."""
    raw = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in data.items()
    }

    def jlist(name: str) -> list[Any]:
        return list(json.loads(raw[name])) if raw.get(name) else []

    rating = raw.get("rating", "")
    intake: IntakeType = "enterprise" if raw.get("intake_type") == "enterprise" else "citizen"
    return Ticket(
        id=raw["id"],
        tenant=raw["tenant"],
        status=TicketStatus(raw["status"]),
        channel=_text(raw, "channel"),
        citizen=_text(raw, "citizen"),
        description=_text(raw, "description"),
        query_code=_text(raw, "query_code"),
        created_at=float(raw["created_at"]),
        updated_at=float(raw.get("updated_at") or raw["created_at"]),
        addresses=tuple(str(a) for a in jlist("addresses")),
        intake_type=intake,
        company=_text(raw, "company"),
        credit_code=_text(raw, "credit_code"),
        category=_text(raw, "category"),
        location_text=_text(raw, "location_text"),
        latitude=_opt_float(raw, "latitude"),
        longitude=_opt_float(raw, "longitude"),
        phone=_text(raw, "phone"),
        name=_text(raw, "name"),
        attachments=tuple(media_from_json(a) for a in jlist("attachments")),
        entry_point=_text(raw, "entry_point"),
        unit=_text(raw, "unit"),
        due_at=_opt_float(raw, "due_at"),
        reply_deadline=_opt_float(raw, "reply_deadline"),
        rating=int(rating) if rating else None,
        attempts=int(raw.get("attempts") or 0),
        failed_units=tuple(str(u) for u in jlist("failed_units")),
        escalation=int(raw.get("escalation") or 0),
        supervision=bool(raw.get("supervision")),
        links=tuple(str(x) for x in jlist("links")),
        language=raw.get("language") or "zh-CN",
        provenance=json.loads(raw["provenance"]) if raw.get("provenance") else {},
        resolution=_text(raw, "resolution"),
        reject_reason=_text(raw, "reject_reason"),
        rating_comment=_text(raw, "rating_comment"),
        rating_state=_text(raw, "rating_state"),
        merged_into=_text(raw, "merged_into"),
    )


# ---------------------------------------------------------------------------------------------
# Ticket changes: small typed operations applied atomically by the store (in a turn, or by staff)


@dataclass(frozen=True, slots=True)
class SetStatus:
    """Move a ticket; checked against TRANSITIONS inside the same script that writes. With
    ``strict`` False an illegal move is skipped (reported in the result) instead of failing the
    whole write — e.g. a late rating on a ticket staff already reopened. Appends a ``status``
    event {from, to, **payload} by ``actor``."""

    ticket_id: str
    to: TicketStatus
    actor: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    strict: bool = True


@dataclass(frozen=True, slots=True)
class SetFields:
    """Overwrite ticket fields (encoded with :func:`encode_field`). Setting ``unit`` moves the
    ticket between unit indexes. ``id``, ``tenant``, ``status`` and ``created_at`` are refused."""

    ticket_id: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExtendField:
    """Append items to a JSON list field (attachments, links, failed_units, addresses)."""

    ticket_id: str
    name: str
    items: tuple[Any, ...]
    unique: bool = True


@dataclass(frozen=True, slots=True)
class IncrField:
    """Add to an integer field (attempts, escalation)."""

    ticket_id: str
    name: str
    by: int = 1


@dataclass(frozen=True, slots=True)
class AddEvent:
    ticket_id: str
    event: TicketEvent


@dataclass(frozen=True, slots=True)
class CountDay:
    """Add to a per-day statistics counter of the tenant (today, tenant time)."""

    name: str
    by: int = 1


# Tenant work queues a ticket can be put on (ZSET ticket id -> score), see store/keys.py:
# "callbacks" (回访 list), "supervision" (flagged after repeated re-dispatch), "entered_by" (tickets
# a staff member entered on a citizen's behalf; ``owner`` is the staff id).
QueueName = Literal["callbacks", "supervision", "entered_by"]


@dataclass(frozen=True, slots=True)
class QueueAdd:
    """Put a ticket on a tenant work queue (ZADD; an existing member gets the new score)."""

    ticket_id: str
    queue: QueueName
    score: float
    owner: str = ""


@dataclass(frozen=True, slots=True)
class QueueRemove:
    """Take a ticket off a tenant work queue (ZREM; absent is fine)."""

    ticket_id: str
    queue: QueueName
    owner: str = ""


TicketChange = SetStatus | SetFields | ExtendField | IncrField | AddEvent | CountDay | QueueAdd | QueueRemove

PROTECTED_FIELDS = frozenset({"id", "tenant", "status", "created_at"})
