"""Who may do what: the role × action policy and the object-level check on each ticket.

Two layers, both checked on every request:

1. the role must hold the action (``POLICY``); if not, 403 — the caller knows their role, so
   saying "not allowed" leaks nothing;
2. on a ticket, the member must be entitled to that ticket (:func:`can_see`). A ``unit`` member
   sees only tickets assigned to their unit, a ``gridworker`` only those they entered. Any other
   ticket answers 404 exactly like an id that does not exist, so guessing or enumerating ids
   reveals nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.staff.auth import Role, Staff
from store.model import Ticket

# Every action a route may require. Routes name one each; a test checks the route table covers
# every action and the matrix covers every role.
ACTIONS = (
    "tickets.list",
    "tickets.read",
    "tickets.accept",
    "tickets.reject",
    "tickets.assign",
    "tickets.note",
    "tickets.reply",
    "tickets.request_info",
    "tickets.resolve",
    "tickets.reopen",
    "tickets.merge",
    "tickets.attachment",
    "tickets.create",
    "units.list",
    "units.manage",
    "units.queue",
    "stats.read",
    "dead_letters.list",
    "dead_letters.retry",
    "callbacks.list",
    "callbacks.record",
    "supervision.list",
    "webhooks.manage",
    "handoffs.list",
    "handoffs.reply",
    "handoffs.close",
)

_READ = {"tickets.list", "tickets.read", "tickets.attachment"}
_UNIT_WORK = {"tickets.note", "tickets.reply", "tickets.request_info", "tickets.resolve"}
_DISPATCH = {"tickets.accept", "tickets.reject", "tickets.assign", "tickets.reopen", "tickets.merge"}
# Citizens waiting for a human (转人工): the dispatch desk answers them, supervisors watch.
_HANDOFFS = {"handoffs.list", "handoffs.reply", "handoffs.close"}

POLICY: Mapping[Role, frozenset[str]] = MappingProxyType(
    {
        Role.ADMIN: frozenset(ACTIONS),
        Role.DISPATCHER: frozenset(
            _READ
            | _UNIT_WORK
            | _DISPATCH
            | {"tickets.create", "units.list", "units.queue", "stats.read"}
            | {"dead_letters.list", "dead_letters.retry", "callbacks.list", "callbacks.record"}
            | {"supervision.list"}
            | _HANDOFFS
        ),
        Role.UNIT: frozenset(_READ | _UNIT_WORK | {"units.list", "units.queue"}),
        Role.SUPERVISOR: frozenset(
            _READ
            | {"tickets.note", "units.list", "units.queue", "stats.read", "supervision.list"}
            | {"callbacks.list", "dead_letters.list", "handoffs.list"}
        ),
        Role.GRIDWORKER: frozenset(_READ | {"tickets.create", "units.list"}),
        Role.VIEWER: frozenset({"stats.read"}),
    }
)

# Roles whose view of a ticket is limited to some tickets (object-level checks apply).
SCOPED_ROLES = frozenset({Role.UNIT, Role.GRIDWORKER})


def allowed(staff: Staff, action: str) -> bool:
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")
    return action in POLICY[staff.role]


def can_see(staff: Staff, ticket: Ticket) -> bool:
    """Whether ``staff`` may know this ticket exists at all."""
    if staff.role is Role.UNIT:
        return bool(staff.unit) and ticket.unit == staff.unit
    if staff.role is Role.GRIDWORKER:
        return ticket.provenance.get("entered_by") == staff.id
    return staff.role is not Role.VIEWER


def can_see_unit(staff: Staff, unit: str) -> bool:
    """Per-unit queues: a unit member sees only their own unit's queue."""
    if staff.role is Role.UNIT:
        return staff.unit == unit
    return True
