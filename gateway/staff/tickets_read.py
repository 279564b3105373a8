"""Ticket reads: the list with filters and cursor paging, the detail with its timeline, and
attachment downloads. Every read goes through :func:`visible_ticket`, the object-level check."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import fields
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.staff import access, masking, queries
from gateway.staff.auth import Role, Staff
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.routing import Call, Result
from store import keys
from store.casestore import IndexName
from store.model import Ticket, TicketStatus, media_to_json
from store.ticketid import TicketIdError, parse_ticket_id

LIST_QUERY = (
    Field("status", enum=tuple(s.value for s in TicketStatus), description="ticket status"),
    Field("unit", max_length=100, description="unit id the ticket is assigned to"),
    Field("channel", enum=("wechat", "sms", "email", "offline"), description="intake channel"),
    Field("entry_point", max_length=100, description="QR scene, enterprise port or grid"),
    Field("enterprise", kind="boolean", description="only enterprise (or only citizen) requests"),
    Field("category", max_length=100),
    Field("overdue", kind="boolean", description="open and past its due date"),
    Field("created_from", kind="date", description="created on or after this local day"),
    Field("created_to", kind="date", description="created on or before this local day"),
    Field("q", max_length=100, description="text the description or location contains"),
    Field("cursor", max_length=200, description="next_cursor of the previous page"),
    Field("limit", kind="integer", minimum=1, maximum=200, description="page size (default 50)"),
)
SCAN_BUDGET = 5000  # index entries looked at per page at most: filters never cost a full scan


def _bad_cursor() -> ApiError:
    return ApiError(400, "invalid_value", "cursor is not one this API issued", "cursor")


def encode_cursor(cursor: str) -> str:
    """The store's paging cursor ("<created>|<id>"), made opaque for clients."""
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        score, _, member = raw.partition("|")
        value = float(score)
    except ValueError:
        raise _bad_cursor() from None
    if not member or value != value or not _safe_part(member):
        raise _bad_cursor()
    return raw


async def visible_ticket(ctx: StaffContext, staff: Staff, raw_id: str) -> Ticket:
    """The ticket, if it exists and ``staff`` may see it; otherwise 404, the same either way."""
    try:
        tid = parse_ticket_id(raw_id, ctx.tenant.prefix)
    except (TicketIdError, ValueError):
        raise not_found() from None
    ticket = await queries.load_ticket(ctx, tid)
    if ticket is None or not access.can_see(staff, ticket):
        raise not_found()
    return ticket


def _local_day(ctx: StaffContext, ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, ctx.tenant.zone).date()


def end_of_day(ctx: StaffContext, day: dt.date) -> float:
    """A due date (a local day) as the store's ``due_at``: the last second of that day."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), ctx.tenant.zone).timestamp()


def is_overdue(ctx: StaffContext, ticket: Ticket) -> bool:
    due = ticket.due_at if ticket.due_at is not None else ticket.reply_deadline
    return due is not None and ticket.is_open and ctx.clock() > due


def _iso_day(ctx: StaffContext, ts: float | None) -> str | None:
    return None if ts is None else _local_day(ctx, ts).isoformat()


def ticket_view(ctx: StaffContext, staff: Staff, ticket: Ticket) -> dict[str, Any]:
    """The API's view of a ticket: the store's field names (store.model.Ticket), plus derived
    fields: ``due_date`` (local day of ``due_at``), ``enterprise``, ``overdue``, ``entered_by``."""
    view: dict[str, Any] = {f.name: getattr(ticket, f.name) for f in fields(Ticket)}
    view["status"] = ticket.status.value
    view["addresses"] = list(ticket.addresses)
    view["attachments"] = [media_to_json(a) for a in ticket.attachments]
    view["failed_units"] = list(ticket.failed_units)
    view["links"] = list(ticket.links)
    view["provenance"] = dict(ticket.provenance)
    view["due_date"] = _iso_day(ctx, ticket.due_at)
    view["enterprise"] = ticket.intake_type == "enterprise"
    view["overdue"] = is_overdue(ctx, ticket)
    view["entered_by"] = ticket.provenance.get("entered_by", "")
    view.pop("tenant")
    if ctx.tenant.mask_personal_data and masking.must_mask(staff.role, ctx.unmasked_roles):
        view = masking.mask_ticket_view(view)
    return view


def _matches(ctx: StaffContext, t: Ticket, q: dict[str, Any]) -> bool:
    simple = ("status", "unit", "channel", "entry_point", "category")
    if any(name in q and getattr(t, name) != q[name] for name in simple):
        return False
    if "enterprise" in q and (t.intake_type == "enterprise") != q["enterprise"]:
        return False
    if "overdue" in q and is_overdue(ctx, t) != q["overdue"]:
        return False
    day = _local_day(ctx, t.created_at)
    if ("created_from" in q and day < q["created_from"]) or ("created_to" in q and day > q["created_to"]):
        return False
    text = q.get("q")
    return not text or text in t.description or text in t.location_text


def _safe_part(value: str) -> bool:
    return "{" not in value and "}" not in value


def _base_index(staff: Staff, q: dict[str, Any]) -> tuple[IndexName, str] | None:
    """The narrowest index to walk; None when the caller's scope makes the answer empty."""
    if staff.role is Role.UNIT:
        if q.get("unit", staff.unit) != staff.unit:
            return None
        return "unit", staff.unit
    if staff.role is Role.GRIDWORKER:
        return "entered_by", staff.id
    if "unit" in q:
        return ("unit", q["unit"]) if _safe_part(q["unit"]) else None
    if "status" in q:
        return "status", q["status"]
    return "created", ""


async def page(
    ctx: StaffContext, staff: Staff, index: tuple[IndexName, str] | None, q: dict[str, Any]
) -> dict[str, Any]:
    """Newest first, on the store's index paging. The cursor is the (created, id) of the last
    ticket looked at, so tickets filed meanwhile neither repeat nor shift the next page; a
    filter looks at most SCAN_BUDGET index entries per page."""
    limit = int(q.get("limit", 50))
    items: list[dict[str, Any]] = []
    if index is None:
        return {"items": items, "next_cursor": None}
    by, value = index
    cursor: str | None = decode_cursor(q["cursor"]) if "cursor" in q else None
    looked = 0
    exhausted = False
    while len(items) < limit and looked < SCAN_BUDGET and not exhausted:
        ids, more = await ctx.cases.list_tickets(ctx.tid, by, value, cursor, limit=200)
        tickets = await ctx.cases.get_tickets(ctx.tid, ids)
        for i, ticket in enumerate(tickets):
            looked += 1
            cursor = f"{ticket.created_at!r}|{ticket.id}"
            if access.can_see(staff, ticket) and _matches(ctx, ticket, q):
                items.append(ticket_view(ctx, staff, ticket))
            if len(items) >= limit or looked >= SCAN_BUDGET:
                exhausted = more is None and i == len(tickets) - 1
                break
        else:
            exhausted = more is None
            cursor = more or cursor
    return {"items": items, "next_cursor": None if exhausted else encode_cursor(cursor or "")}


async def list_tickets(ctx: StaffContext, call: Call) -> Result:
    return 200, await page(ctx, call.staff, _base_index(call.staff, call.query), call.query)


async def unit_queue(ctx: StaffContext, call: Call) -> Result:
    """The unit's open work: tickets assigned to it and not yet resolved (the store keeps this
    index from each ticket's status and unit), newest first, with the list's filters. What the
    unit finished stays in ``/tickets?unit=…``."""
    unit = call.path["unit_id"]
    known = await ctx.redis.hexists(keys.units(ctx.tid), unit) if _safe_part(unit) else False
    if not known or not access.can_see_unit(call.staff, unit):
        raise not_found("unit")
    q = {**call.query, "unit": unit}
    return 200, await page(ctx, call.staff, ("unit_open", unit), q)


async def ticket_detail(ctx: StaffContext, call: Call) -> Result:
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    view = ticket_view(ctx, call.staff, ticket)
    view["timeline"] = await queries.timeline(ctx, ticket.id)
    return 200, view


async def attachment(ctx: StaffContext, call: Call) -> Result:
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    media_id = call.path["media_id"]
    refs = [a for a in ticket.attachments if a.media_id == media_id]
    if not refs or ctx.media is None:
        raise not_found("attachment")
    reader = getattr(ctx.media, "read", None) or getattr(ctx.media, "get", None)
    try:
        data = await reader(media_id) if reader else None
    except (FileNotFoundError, KeyError):
        data = None
    if data is None:
        raise not_found("attachment")
    ref = refs[0]
    resp = web.Response(body=data, content_type=ref.content_type or "application/octet-stream")
    name = (ref.filename or media_id).replace('"', "")
    resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    return resp
