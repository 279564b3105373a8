"""Create a ticket on a citizen's behalf: a grid worker's letterbox round or a phone call.

The same fields as the conversation form plus provenance: who entered it, the grid, the date on
the paper letter, and an optional scan of the letter (base64 in the body, saved in the media
store). When a phone number is given the citizen gets the ticket id and query code by SMS
(catalogue key ``ticket.created_offline``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import phonenumbers

from channels.base import Outbound, Purpose, tel_address
from gateway.staff import queries
from gateway.staff.context import StaffContext
from gateway.staff.errors import MAX_UPLOAD_BODY, ApiError, Field
from gateway.staff.routing import Call, Result
from gateway.staff.tickets_read import ticket_view
from store.model import TicketEvent

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


async def _save_scan(ctx: StaffContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    if "letter_scan" not in body:
        return []
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
    saver = getattr(ctx.media, "save", None) or ctx.media.put
    ref = await saver(data, ctype, "letter-scan")
    return [
        {
            "media_id": ref.media_id,
            "content_type": ref.content_type,
            "size": ref.size,
            "filename": "letter-scan",
        }
    ]


async def create_on_behalf(ctx: StaffContext, call: Call) -> Result:
    body = call.body
    fields: dict[str, Any] = {
        k: body.get(k, "")
        for k in ("description", "location", "category", "name", "company", "credit_code", "entry_point")
    }
    fields["intake_type"] = body.get("intake_type", "citizen")
    fields["entry_point"] = fields["entry_point"] or ("grid" if body.get("grid") else "staff")
    fields["channel"] = "offline"
    fields["entered_by"] = call.staff.id
    addresses: list[str] = []
    if body.get("phone"):
        fields["phone"] = _phone(body["phone"])
        addresses.append(tel_address(fields["phone"]))
    fields["citizen"] = addresses[0] if addresses else ""
    fields["addresses"] = addresses
    letter = body.get("letter_date")
    fields["provenance"] = {
        "entered_by": call.staff.id,
        "entered_by_name": call.staff.name,
        "grid": body.get("grid", ""),
        "letter_date": letter.isoformat() if letter else None,
    }
    fields["attachments"] = await _save_scan(ctx, body)
    now = ctx.clock()
    event = TicketEvent(
        "created", call.staff.actor, now, {"channel": "offline", "provenance": fields["provenance"]}
    )

    def outbounds(tid: str, code: str) -> list[Outbound]:
        if not addresses:
            return []
        return [
            Outbound(
                id=f"{tid}:0:created", tenant=ctx.tid, recipient=addresses[0], purpose=Purpose.TICKET_CREATED,
                key="ticket.created_offline", params={"ticket_id": tid, "query_code": code}, ticket_id=tid,
            )
        ]  # fmt: skip

    ticket = await queries.create_ticket(
        ctx.redis, ctx.tid, ctx.tenant.prefix, ctx.tenant.zone, fields, event, outbounds, now
    )
    view = ticket_view(ctx, call.staff, ticket)
    view["query_code"] = ticket["query_code"]
    return 201, view
