"""Create a ticket on a citizen's behalf: a grid worker's letterbox round or a phone call.

The same fields as the conversation form plus provenance: who entered it, the grid, the date on
the paper letter, and an optional scan of the letter (base64 in the body, saved in the media
store). When a phone number is given the citizen gets the ticket id and query code by SMS
(catalogue key ``ticket.created_offline``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import phonenumbers

from channels.base import MediaRef, Outbound, Purpose, tel_address
from gateway.staff import queries
from gateway.staff.context import StaffContext
from gateway.staff.errors import MAX_UPLOAD_BODY, ApiError, Field
from gateway.staff.routing import Call, Result
from gateway.staff.tickets_read import end_of_day, ticket_view
from store.apply import TICKET_ID_PLACEHOLDER
from store.model import NewTicket, QueueAdd, Ticket
from store.ticketid import new_query_code

CREATE_BODY = (
    Field("description", required=True, min_length=1, max_length=4000),
    Field("location", max_length=500),
    Field("phone", max_length=30, description="citizen's phone; they get the id by SMS"),
    Field("category", max_length=100),
    Field("intake_type", enum=("citizen", "enterprise")),
    Field("name", max_length=100),
    Field("company", max_length=200),
    Field("credit_code", max_length=18),
    Field("entry_point", max_length=100, description="e.g. phone, letterbox"),
    Field("grid", max_length=100, description="governance grid the request came from"),
    Field("letter_date", kind="date", description="date written on the paper letter"),
    Field("letter_scan", max_length=MAX_UPLOAD_BODY, description="base64 scan of the letter"),
    Field("letter_scan_type", enum=("image/jpeg", "image/png", "application/pdf")),
)
MAX_SCAN_BYTES = 5 * 1024 * 1024


def _phone(raw: str) -> str:
    try:
        number = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ApiError(400, "invalid_value", "phone is not a valid phone number", "phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def _save_scan(ctx: StaffContext, body: dict[str, Any]) -> tuple[MediaRef, ...]:
    if "letter_scan" not in body:
        return ()
    try:
        data = base64.b64decode(body["letter_scan"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_value", "letter_scan must be base64", "letter_scan") from None
    if not data or len(data) > MAX_SCAN_BYTES:
        raise ApiError(
            413, "too_large", f"letter_scan must be 1 byte to {MAX_SCAN_BYTES} bytes", "letter_scan"
        )
    if ctx.media is None:
        raise ApiError(422, "no_media_store", "this gateway has no media store for scans", "letter_scan")
    ctype = body.get("letter_scan_type", "application/octet-stream")
    ref = await ctx.media.save(data, ctype, "letter-scan")
    return (MediaRef(ref.media_id, ref.content_type, ref.size, ref.filename or "letter-scan"),)


def _reply_deadline(ctx: StaffContext, now: float) -> float:
    """What the citizen is promised: the end of the local day ``reply_deadline_days`` ahead."""
    day = dt.datetime.fromtimestamp(now, ctx.tenant.zone).date()
    return end_of_day(ctx, day + dt.timedelta(days=ctx.tenant.reply_deadline_days))


def new_ticket(ctx: StaffContext, call: Call, attachments: tuple[MediaRef, ...], now: float) -> NewTicket:
    """The store's NewTicket for a request entered on a citizen's behalf. Without a phone the
    citizen is only reachable through the member who entered it (``staff:<id>``: no pushes)."""
    body = call.body
    phone = _phone(body["phone"]) if body.get("phone") else ""
    citizen = tel_address(phone) if phone else f"staff:{call.staff.id}"
    letter = body.get("letter_date")
    provenance = {
        "entered_by": call.staff.id,
        "entered_by_name": call.staff.name,
        "entered_at": repr(now),
        "grid": body.get("grid", ""),
        "letter_date": letter.isoformat() if letter else "",
    }
    return NewTicket(
        channel="offline",
        citizen=citizen,
        description=body["description"],
        intake_type=body.get("intake_type", "citizen"),
        company=body.get("company", ""),
        credit_code=body.get("credit_code", ""),
        category=body.get("category", ""),
        location_text=body.get("location", ""),
        phone=phone,
        name=body.get("name", ""),
        attachments=attachments,
        entry_point=body.get("entry_point") or ("grid" if body.get("grid") else "staff"),
        reply_deadline=_reply_deadline(ctx, now),
        language=ctx.tenant.language,
        query_code=new_query_code(),
        provenance=provenance,
    )


async def create_on_behalf(ctx: StaffContext, call: Call) -> Result:
    attachments = await _save_scan(ctx, call.body)
    now = ctx.clock()
    new = new_ticket(ctx, call, attachments, now)
    ph = TICKET_ID_PLACEHOLDER
    outbox = []
    if new.phone:
        outbox.append(
            Outbound(
                id=f"{ph}:0:created", tenant=ctx.tid, recipient=new.citizen, purpose=Purpose.TICKET_CREATED,
                key="ticket.created_offline", params={"ticket_id": ph, "query_code": new.query_code},
                ticket_id=ph, language=new.language,
            )
        )  # fmt: skip

    def respond(ticket: Ticket) -> tuple[int, Any]:
        view = ticket_view(ctx, call.staff, ticket)
        view["query_code"] = ticket.query_code  # shown once, to the member who entered it
        return 201, view

    done = await queries.create(
        ctx, new, actor=call.staff.actor, changes=[QueueAdd(ph, "entered_by", now, owner=call.staff.id)],
        outbox=outbox, idem=call.idem, respond=respond,
    )  # fmt: skip
    return done.response or respond(done.ticket)
