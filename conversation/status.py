"""Status queries: what the engine may reveal about which ticket.

A citizen sees their own tickets (filed from this address, or listing it as an owner). Anyone
else needs the ticket's query code; without it they learn nothing, not even whether the id exists.
A mistyped id (the check digit fails) is told so, rather than matched to someone else's case.
"""

from __future__ import annotations

import re

from conversation.text import nfkc
from conversation.turn import TicketSummary, Turn
from store.ticketid import TicketIdError, find_ticket_ids, split_ticket_id

_SEPS = r"[\s\-_./]*"


def ticket_ids_mentioned(text: str, prefix: str | None = None) -> list[str]:
    """Valid ticket ids in ``text`` (canonical form), for the caller to pre-load."""
    try:
        return [t for t in find_ticket_ids(text, prefix) if isinstance(t, str)]
    except Exception:  # a helper for the caller: never fail a turn over it
        return []


def query_code_in(text: str, ticket_id: str | None) -> str:
    """A 4–6 digit query code typed next to the id (the id's own digit groups excluded)."""
    folded = nfkc(text)
    if ticket_id is not None:
        parts = split_ticket_id(ticket_id)
        digits = f"{parts.day:%y%m%d}{parts.seq:04d}{parts.check}"
        pattern = _SEPS.join(re.escape(d) for d in digits)
        folded = re.sub(pattern, " ", folded, count=1)
    codes = re.findall(r"(?<!\d)\d{4,6}(?!\d)", folded)
    return codes[-1] if codes else ""


def _say_status(turn: Turn, t: TicketSummary) -> None:
    updated = t.updated_at.astimezone(turn.settings.tz).strftime("%Y-%m-%d %H:%M") if t.updated_at else "-"
    turn.say(f"status_{t.status.value}", ticket_id=t.id, unit=t.unit or "-", updated=updated)


def status_query(turn: Turn, text: str) -> None:
    found = find_ticket_ids(text, turn.settings.ticket_prefix)
    valid = [t for t in found if isinstance(t, str)]
    if not valid and any(isinstance(t, TicketIdError) for t in found):
        turn.say("ticket_id_invalid")
        return
    if not valid:
        list_own(turn)
        return
    ticket_id = valid[0]
    summary = turn.context.ticket(ticket_id)
    code = query_code_in(text, ticket_id)
    if summary is not None and (
        turn.owns(summary) or (code and summary.query_code and code == summary.query_code)
    ):
        _say_status(turn, summary)
    else:
        turn.say("status_not_found", ticket_id=ticket_id)


def list_own(turn: Turn) -> None:
    own = [t for t in turn.context.tickets if turn.owns(t) and t.is_open]
    if not own:
        turn.say("status_none")
        return
    limit = turn.settings.status_list_limit
    turn.say("status_list_header", count=str(len(own)))
    for t in own[:limit]:
        _say_status(turn, t)
