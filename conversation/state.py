"""The conversation state of one citizen address: the draft being collected and what the
conversation remembers between turns (filed tickets, a pending survey or staff question, consent).

Frozen and JSON round-trippable; the store keeps it with a version (DESIGN.md "One turn at a time").
Unknown or damaged JSON never raises: :meth:`ConversationState.from_json` falls back to a fresh
state, because a conversation that cannot be read must still be answered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

import orjson

from channels.base import MediaRef


class Mode(enum.StrEnum):
    IDLE = "idle"
    COLLECTING = "collecting"  # a draft is open and a slot is being asked
    CONFIRMING = "confirming"  # the summary was shown; waiting for 1 / 2 / 0
    HANDED_TO_HUMAN = "handed_to_human"


@dataclass(frozen=True, slots=True)
class SlotValue:
    """One filled slot and where it came from (provenance)."""

    value: str
    source: str  # "message" (extracted), "answer" (to the slot asked), "correction", "channel", "location"
    at: float  # unix seconds
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class KnownLocation:
    """The last location a WeChat LOCATION event reported; offered when asking for the location."""

    latitude: float
    longitude: float
    label: str
    at: float


@dataclass(frozen=True, slots=True)
class FiledTicket:
    id: str
    query_code: str
    filed_at: float


@dataclass(frozen=True, slots=True)
class StaffQuestion:
    ticket_id: str
    question: str


_MISSING = object()
_PLAIN = frozenset({str, int, bool, type(None), Mode})


@dataclass(frozen=True, slots=True)
class ConversationState:
    mode: Mode = Mode.IDLE
    slots: tuple[tuple[str, SlotValue], ...] = ()  # ordered (name, value) pairs, unique names
    asking: str | None = None
    tries: int = 0
    intake_type: str = "citizen"
    entry_point: str | None = None
    language: str | None = None
    draft_id: str = ""  # identifies the open draft so stale timers can be told apart
    draft_started: float | None = None
    attachments: tuple[MediaRef, ...] = ()
    last_location: KnownLocation | None = None
    tickets: tuple[FiledTicket, ...] = ()
    current_ticket: str | None = None
    pending_survey: str | None = None
    comment_for: tuple[str, int] | None = None  # (ticket id, rating) awaiting an optional comment
    pending_question: StaffQuestion | None = None
    sms_opted_out: bool = False
    channel: str = ""

    # -- slot helpers ------------------------------------------------------------------------

    def slot(self, name: str) -> SlotValue | None:
        for key, value in self.slots:
            if key == name:
                return value
        return None

    def value(self, name: str) -> str:
        filled = self.slot(name)
        return filled.value if filled else ""

    def with_slot(self, name: str, value: SlotValue) -> ConversationState:
        kept = tuple((k, v) for k, v in self.slots if k != name)
        return replace(self, slots=(*kept, (name, value)))

    def evolve(self, **changes: Any) -> ConversationState:
        """``dataclasses.replace``, but this very state when no field would change.

        A replace copies all the fields and several run per turn, mostly setting a value the
        field already has. Only values of plain immutable types count as unchanged (equal and
        of the same type), so what is returned cannot be told from what replace would return;
        floats (0.0 == -0.0) and containers always take the replace.
        """
        for name, value in changes.items():
            current = getattr(self, name, _MISSING)
            if type(value) not in _PLAIN or type(current) is not type(value) or current != value:
                return replace(self, **changes)
        return self

    def filled(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.slots)

    def clear_draft(self) -> ConversationState:
        return replace(
            self,
            mode=Mode.IDLE,
            slots=(),
            asking=None,
            tries=0,
            draft_id="",
            draft_started=None,
            attachments=(),
            intake_type="enterprise" if self.entry_point == "enterprise" else "citizen",
        )

    # -- JSON --------------------------------------------------------------------------------

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "v": 1,
            "mode": self.mode.value,
            "slots": [[k, _slot_to(v)] for k, v in self.slots],
            "asking": self.asking,
            "tries": self.tries,
            "intake_type": self.intake_type,
            "entry_point": self.entry_point,
            "language": self.language,
            "draft_id": self.draft_id,
            "draft_started": self.draft_started,
            "attachments": [_media_to(m) for m in self.attachments],
            "last_location": None
            if self.last_location is None
            else [
                self.last_location.latitude,
                self.last_location.longitude,
                self.last_location.label,
                self.last_location.at,
            ],
            "tickets": [[t.id, t.query_code, t.filed_at] for t in self.tickets],
            "current_ticket": self.current_ticket,
            # The staff side writes these two keys directly (gateway/staff: patch_conversation), in
            # this dict shape; keep it identical both ways.
            "pending_survey": None if self.pending_survey is None else {"ticket_id": self.pending_survey},
            "comment_for": list(self.comment_for) if self.comment_for else None,
            "pending_question": None
            if self.pending_question is None
            else {"ticket_id": self.pending_question.ticket_id, "question": self.pending_question.question},
            "sms_opted_out": self.sms_opted_out,
            "channel": self.channel,
        }
        # Absent rather than null: the staff side drops keys (e.g. pending_survey) to clear them.
        data = {k: v for k, v in data.items() if v is not None}
        # orjson: the same compact UTF-8 JSON as json.dumps(ensure_ascii=False), in a fraction of
        # the time; every turn encodes the state once and decodes it once.
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> ConversationState:
        if not raw:
            return cls()
        try:
            data = orjson.loads(raw)
            return _from_dict(data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return cls()


def _slot_to(v: SlotValue) -> list[Any]:
    return [v.value, v.source, v.at, v.latitude, v.longitude]


def _media_to(m: MediaRef) -> list[Any]:
    return [m.media_id, m.content_type, m.size, m.filename, m.flagged]


def _media_from(item: list[Any]) -> MediaRef:
    return MediaRef(str(item[0]), str(item[1]), int(item[2]), str(item[3]), bool(item[4]))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _from_dict(data: dict[str, Any]) -> ConversationState:
    slots = tuple(
        (
            str(k),
            SlotValue(
                str(v[0]),
                str(v[1]),
                float(v[2]),
                None if v[3] is None else float(v[3]),
                None if v[4] is None else float(v[4]),
            ),
        )
        for k, v in data.get("slots", [])
    )
    loc = data.get("last_location")
    question = data.get("pending_question")
    if isinstance(question, dict):
        question = [question["ticket_id"], question.get("question", "")]
    survey = data.get("pending_survey")
    if isinstance(survey, dict):
        survey = survey.get("ticket_id")
    comment = data.get("comment_for")
    return ConversationState(
        mode=Mode(data.get("mode", "idle")),
        slots=slots,
        asking=_opt_str(data.get("asking")),
        tries=int(data.get("tries", 0)),
        intake_type=str(data.get("intake_type", "citizen")),
        entry_point=_opt_str(data.get("entry_point")),
        language=_opt_str(data.get("language")),
        draft_id=str(data.get("draft_id", "")),
        draft_started=None if data.get("draft_started") is None else float(data["draft_started"]),
        attachments=tuple(_media_from(m) for m in data.get("attachments", [])),
        last_location=None
        if loc is None
        else KnownLocation(float(loc[0]), float(loc[1]), str(loc[2]), float(loc[3])),
        tickets=tuple(FiledTicket(str(t[0]), str(t[1]), float(t[2])) for t in data.get("tickets", [])),
        current_ticket=_opt_str(data.get("current_ticket")),
        pending_survey=_opt_str(survey),
        comment_for=None if not comment else (str(comment[0]), int(comment[1])),
        pending_question=None if not question else StaffQuestion(str(question[0]), str(question[1])),
        sms_opted_out=bool(data.get("sms_opted_out", False)),
        channel=str(data.get("channel", "")),
    )
