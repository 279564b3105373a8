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
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


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
