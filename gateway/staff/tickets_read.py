"""Ticket reads: the list with filters and cursor paging, the detail with its timeline, and
attachment downloads. Every read goes through :func:`visible_ticket`, the object-level check."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from aiohttp import web

from gateway.staff import access, masking, queries
from gateway.staff.auth import Role, Staff
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.routing import Call, Result
from store import keys
from store.model import OPEN_STATUSES, TicketStatus
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


def encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{member}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, _, member = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        value = float(score)
    except ValueError:
        raise _bad_cursor() from None
    if not member or value != value:
        raise _bad_cursor()
    return value, member


async def visible_ticket(ctx: StaffContext, staff: Staff, raw_id: str) -> dict[str, Any]:
    """The ticket, if it exists and ``staff`` may see it; otherwise 404, the same either way."""
    try:
        tid = parse_ticket_id(raw_id, ctx.tenant.prefix)
    except (TicketIdError, ValueError):
        raise not_found() from None
    ticket = await queries.load_ticket(ctx.redis, ctx.tid, tid)
    if ticket is None or not access.can_see(staff, ticket):
        raise not_found()
    return ticket


def _local_day(ctx: StaffContext, ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, ctx.tenant.zone).date()


def is_overdue(ctx: StaffContext, ticket: dict[str, Any]) -> bool:
    due = ticket.get("due_date") or ticket.get("reply_deadline") or ""
    if not due or ticket.get("status") not in OPEN_STATUSES:
        return False
    try:
        return dt.date.fromisoformat(str(due)) < _local_day(ctx, ctx.clock())
    except ValueError:
        return False


def ticket_view(ctx: StaffContext, staff: Staff, ticket: dict[str, Any]) -> dict[str, Any]:
    view = {
        k: ticket.get(k)
        for k in (
            "id", "status", "channel", "entry_point", "intake_type", "company", "credit_code",
            "category", "description", "location", "latitude", "longitude", "phone", "name",
            "citizen", "unit", "due_date", "reply_deadline", "resolution", "rating",
            "rating_comment", "merged_into", "entered_by", "created", "updated",
        )
    }  # fmt: skip
    view["addresses"] = ticket.get("addresses") or []
    view["attachments"] = ticket.get("attachments") or []
    view["provenance"] = ticket.get("provenance")
    view["failed_units"] = ticket.get("failed_units") or []
    view["attempt"] = int(ticket.get("attempt") or 1)
    view["enterprise"] = ticket.get("intake_type") == "enterprise"
    view["overdue"] = is_overdue(ctx, ticket)
    view["supervision"] = ticket.get("flag") == "supervision"
    if ctx.tenant.mask_personal_data and masking.must_mask(staff.role, ctx.unmasked_roles):
        view = masking.mask_ticket_view(view)
    return view


def _matches(ctx: StaffContext, t: dict[str, Any], q: dict[str, Any]) -> bool:
    simple = ("status", "unit", "channel", "entry_point", "category")
    if any(name in q and t.get(name) != q[name] for name in simple):
        return False
    if "enterprise" in q and (t.get("intake_type") == "enterprise") != q["enterprise"]:
        return False
    if "overdue" in q and is_overdue(ctx, t) != q["overdue"]:
        return False
    day = _local_day(ctx, float(t.get("created") or 0))
    if ("created_from" in q and day < q["created_from"]) or ("created_to" in q and day > q["created_to"]):
        return False
    text = q.get("q")
    return not text or text in str(t.get("description") or "") or text in str(t.get("location") or "")


def _base_index(ctx: StaffContext, staff: Staff, q: dict[str, Any]) -> str | None:
    """The narrowest index to walk; None when the caller's scope makes the answer empty."""
    if staff.role is Role.UNIT:
        if q.get("unit", staff.unit) != staff.unit:
            return None
        return keys.index_unit(ctx.tid, staff.unit)
    if staff.role is Role.GRIDWORKER:
        return keys.index_entered_by(ctx.tid, staff.id)
    if "unit" in q:
        return keys.index_unit(ctx.tid, q["unit"])
    if "status" in q:
        return keys.index_status(ctx.tid, q["status"])
    return keys.index_created(ctx.tid)


async def page(ctx: StaffContext, staff: Staff, index: str | None, q: dict[str, Any]) -> dict[str, Any]:
    """Newest first. The cursor is the (created, id) of the last item shown, so tickets filed
    meanwhile neither repeat nor shift the next page."""
    limit = int(q.get("limit", 50))
    items: list[dict[str, Any]] = []
    if index is None:
        return {"items": items, "next_cursor": None}
    top: float | str = "+inf"
    after: tuple[float, str] | None = None
    if "cursor" in q:
        after = decode_cursor(q["cursor"])
        top = after[0]
    looked = 0
    last: tuple[float, str] | None = None
    while len(items) < limit and looked < SCAN_BUDGET:
        raw: Any = await ctx.redis.zrevrangebyscore(index, top, "-inf", start=0, num=200, withscores=True)
        batch: list[tuple[str, float]] = [(m.decode(), float(s)) for m, s in raw]
        if after is not None:
            batch = [(m, s) for m, s in batch if s < after[0] or m < after[1]]
        if not batch:
            last = None
            break
        for member, score in batch:
            looked += 1
            last = (score, member)
            ticket = await queries.load_ticket(ctx.redis, ctx.tid, member)
            if ticket and access.can_see(staff, ticket) and _matches(ctx, ticket, q):
                items.append(ticket_view(ctx, staff, ticket))
                if len(items) >= limit:
                    break
        assert last is not None  # the batch was not empty
        after, top = last, last[0]
    cursor = encode_cursor(*last) if last is not None else None
    return {"items": items, "next_cursor": cursor}


async def list_tickets(ctx: StaffContext, call: Call) -> Result:
    return 200, await page(ctx, call.staff, _base_index(ctx, call.staff, call.query), call.query)


async def unit_queue(ctx: StaffContext, call: Call) -> Result:
    unit = call.path["unit_id"]
    known = (
        await ctx.redis.hexists(keys.units(ctx.tid), unit) if "{" not in unit and "}" not in unit else False
    )
    if not known or not access.can_see_unit(call.staff, unit):
        raise not_found("unit")
    q = {**call.query, "unit": unit}
    return 200, await page(ctx, call.staff, keys.index_unit(ctx.tid, unit), q)


async def ticket_detail(ctx: StaffContext, call: Call) -> Result:
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    view = ticket_view(ctx, call.staff, ticket)
    view["timeline"] = await queries.timeline(ctx.redis, ctx.tid, ticket["id"])
    return 200, view


async def attachment(ctx: StaffContext, call: Call) -> Result:
    ticket = await visible_ticket(ctx, call.staff, call.path["ticket_id"])
    media_id = call.path["media_id"]
    refs = [a for a in ticket.get("attachments") or [] if a.get("media_id") == media_id]
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
    resp = web.Response(body=data, content_type=ref.get("content_type") or "application/octet-stream")
    name = str(ref.get("filename") or media_id).replace('"', "")
    resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(name)}"
    return resp


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
