"""What one conversation turn asks the rest of the system to do, as plain frozen data.

The engine never performs effects; it returns a list of these. The gateway applies them all in one
store transaction (DESIGN.md "The path of one message"), so a turn either happens completely or not.

A ticket filed in this turn has no id yet: the store allocates it inside the apply script. Every
place that must name it (reply params, the conversation state) carries :data:`NEW_TICKET_ID`, and
the store replaces the placeholder with the real id atomically. Inside the state's JSON the
placeholder appears escaped, as :data:`NEW_TICKET_ID_IN_JSON`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from channels.base import MediaRef, Purpose

NEW_TICKET_ID = "\x00TICKET_ID\x00"
# json.dumps always escapes control characters, so this is how the placeholder looks in to_json().
NEW_TICKET_ID_IN_JSON = "\\u0000TICKET_ID\\u0000"


def _frozen(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in (value or {}).items()})


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to the citizen: a catalogue key and its parameters, rendered per channel later.

    ``purpose`` tells the outbox which kind of message it is (a filing answer may reach a citizen
    who opted out of SMS pushes, see channels.base.CONVERSATIONAL_PURPOSES). ``language`` is the
    conversation's language at the end of the turn.
    """

    key: str
    params: Mapping[str, str] = field(default_factory=dict)
    purpose: Purpose = Purpose.REPLY
    language: str = "zh-CN"

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))


@dataclass(frozen=True, slots=True)
class TicketDraft:
    """Everything the conversation collected for a new ticket."""

    description: str
    location: str
    phone: str
    category: str
    intake_type: str = "citizen"  # "citizen" or "enterprise"
    name: str = ""
    company: str = ""
    credit_code: str = ""
    latitude: float | None = None
    longitude: float | None = None
    entry_point: str = ""
    attachments: tuple[MediaRef, ...] = ()
    language: str = "zh-CN"
    query_code: str = ""
    reply_deadline: date | None = None
    channel: str = ""
    citizen: str = ""  # the address that filed it

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the store."""
        return {
            "description": self.description,
            "location": self.location,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "phone": self.phone,
            "category": self.category,
            "intake_type": self.intake_type,
            "name": self.name,
            "company": self.company,
            "credit_code": self.credit_code,
            "entry_point": self.entry_point,
            "attachments": [
                {
                    "media_id": m.media_id,
                    "content_type": m.content_type,
                    "size": m.size,
                    "filename": m.filename,
                }
                for m in self.attachments
            ],
            "language": self.language,
            "query_code": self.query_code,
            "reply_deadline": self.reply_deadline.isoformat() if self.reply_deadline else None,
            "channel": self.channel,
            "citizen": self.citizen,
        }


@dataclass(frozen=True, slots=True)
class CreateTicket:
    """File a new ticket. The store allocates its id and substitutes :data:`NEW_TICKET_ID`."""

    fields: TicketDraft


@dataclass(frozen=True, slots=True)
class AppendSupplement:
    """Add the citizen's further words or photos (补充材料) to an open ticket."""

    ticket_id: str
    text: str = ""
    media: tuple[MediaRef, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordRating:
    """The citizen's satisfaction rating (1 very unsatisfied … 5 very satisfied).

    ``amend`` marks a comment given after the rating was already recorded: the store attaches the
    comment to that rating and changes no status.
    """

    ticket_id: str
    rating: int
    comment: str = ""
    amend: bool = False


@dataclass(frozen=True, slots=True)
class AnswerStaffQuestion:
    """The citizen's answer to a question a unit asked about a ticket."""

    ticket_id: str
    text: str
    media: tuple[MediaRef, ...] = ()


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Ask the scheduler to feed back an Inbound(kind=EVENT, event="timer", attrs={"timer": name,
    **payload}) at ``due``. Names are unique per conversation; setting one again replaces it."""

    name: str
    due: datetime
    payload: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", _frozen(self.payload))


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class HandToHuman:
    """Put the conversation in front of a human operator. ``text`` carries what the citizen said
    while waiting, so nothing is lost."""

    reason: str  # "requested", "failed_tries", "follow_up"
    ticket_id: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class RecordConsent:
    """The citizen's SMS consent changed (STOP/START style keywords)."""

    opt_in: bool


@dataclass(frozen=True, slots=True)
class LinkAddress:
    """Another address of the same citizen (e.g. ``tel:+86…`` typed in WeChat) so pushes can fall
    back to it."""

    address: str


Action = (
    Reply
    | CreateTicket
    | AppendSupplement
    | RecordRating
    | AnswerStaffQuestion
    | SetTimer
    | CancelTimer
    | HandToHuman
    | RecordConsent
    | LinkAddress
)
