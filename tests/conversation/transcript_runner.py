"""Runs one transcript (tests/conversation/transcripts/*.toml) through the pure engine.

A transcript is a conversation: citizen turns (text, channel, kind/event/attrs, time offsets),
staff-side steps (status changes, survey, a unit's question) and timer firings, each with the
reply keys and text fragments expected, then the expected ticket fields. No server is involved
(STYLE.md 9): tickets filed in the transcript live in a small in-test table that stands where
the store would, only so later turns get the TurnContext a real caller would pre-load. Ids are
allocated with store.ticketid, and the conversation state goes through its JSON form every turn.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from channels.base import Inbound, InboundKind, Location, MediaRef
from conversation.actions import (
    NEW_TICKET_ID,
    NEW_TICKET_ID_IN_JSON,
    Action,
    AnswerStaffQuestion,
    AppendSupplement,
    CancelTimer,
    CreateTicket,
    HandToHuman,
    LinkAddress,
    RecordConsent,
    RecordRating,
    Reply,
    SetTimer,
)
from conversation.catalogue import Catalogue
from conversation.engine import TicketSummary, TurnContext, step_strict, ticket_ids_mentioned
from conversation.settings import settings_from_mapping
from conversation.state import ConversationState
from conversation.survey import begin_staff_question, begin_survey, close_survey
from store.model import TicketStatus
from store.ticketid import format_ticket_id

START = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Beijing
DEFAULT_SENDER = {
    "wechat": "wechat:wxsandbox000000000:o_citizen_1",
    "sms": "tel:+8613912345678",
    "email": "mailto:citizen@example.com",
}
CATALOGUE = Catalogue.load()


@dataclass
class Ticket:
    id: str
    status: TicketStatus
    owners: list[str]
    query_code: str = ""
    unit: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    supplements: list[tuple[str, int]] = field(default_factory=list)
    ratings: list[tuple[int, str, bool]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    handoffs: int = 0

    def summary(self) -> TicketSummary:
        return TicketSummary(self.id, self.status, self.unit, self.query_code, tuple(self.owners), START)


@dataclass
class Run:
    spec: dict[str, Any]
    settings: Any = None
    state: ConversationState = field(default_factory=ConversationState)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    timers: dict[str, SetTimer] = field(default_factory=dict)
    now: datetime = START
    seq: int = 0
    consent: list[bool] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    handoffs: list[HandToHuman] = field(default_factory=list)

    def ref(self, name: str) -> str:
        return self.created[int(name[1:]) - 1] if name.startswith("$") else name


def _inbound(run: Run, turn: dict[str, Any], n: int) -> Inbound:
    channel = turn.get("channel", run.spec.get("channel", "wechat"))
    sender = turn.get("sender", run.spec.get("sender", DEFAULT_SENDER[channel]))
    kind = InboundKind(turn.get("kind", "email" if channel == "email" else "text"))
    loc = turn.get("location")
    media = tuple(
        MediaRef(f"sha256-{n}-{i}", "image/jpeg", 1000 + i, f"photo{i}.jpg")
        for i in range(turn.get("media", 0))
    )
    return Inbound(
        channel=channel,
        account="acct",
        sender=sender,
        external_id=f"ext-{n}",
        kind=kind,
        received_at=run.now,
        text=turn.get("text", ""),
        media=media,
        location=None if loc is None else Location(loc["lat"], loc["lon"], loc.get("label", "")),
        entry_point=turn.get("entry_point"),
        event=turn.get("event"),
        attrs=turn.get("attrs", {}),
    )


def _context(run: Run, inbound: Inbound, code: str) -> TurnContext:
    wanted = set(ticket_ids_mentioned(inbound.text, run.settings.ticket_prefix))
    if run.state.current_ticket:
        wanted.add(run.state.current_ticket)
    chosen = [t.summary() for t in run.tickets.values() if inbound.sender in t.owners or t.id in wanted]
    return TurnContext(tuple(chosen), code)


def _apply(run: Run, actions: list[Action], sender: str, channel: str) -> list[Reply]:
    new_id = ""
    replies: list[Reply] = []
    for action in actions:
        if isinstance(action, CreateTicket):
            run.seq += 1
            new_id = format_ticket_id(
                run.settings.ticket_prefix, run.now.astimezone(run.settings.tz).date(), run.seq
            )
            fields = action.fields.to_dict()
            run.tickets[new_id] = Ticket(new_id, TicketStatus.NEW, [sender], fields["query_code"], "", fields)
            run.created.append(new_id)
        elif isinstance(action, AppendSupplement):
            run.tickets[action.ticket_id].supplements.append((action.text, len(action.media)))
        elif isinstance(action, RecordRating):
            run.tickets[action.ticket_id].ratings.append((action.rating, action.comment, action.amend))
        elif isinstance(action, AnswerStaffQuestion):
            run.tickets[action.ticket_id].answers.append(action.text)
        elif isinstance(action, SetTimer):
            run.timers[action.name] = action
        elif isinstance(action, CancelTimer):
            run.timers.pop(action.name, None)
        elif isinstance(action, RecordConsent):
            run.consent.append(action.opt_in)
        elif isinstance(action, LinkAddress):
            run.links.append(action.address)
        elif isinstance(action, HandToHuman):
            run.handoffs.append(action)
        elif isinstance(action, Reply):
            replies.append(action)
    if new_id:
        replies = [
            Reply(
                r.key,
                {k: v.replace(NEW_TICKET_ID, new_id) for k, v in r.params.items()},
                r.purpose,
                r.language,
            )
            for r in replies
        ]
    raw = run.state.to_json()
    if new_id:
        raw = raw.replace(NEW_TICKET_ID_IN_JSON.encode(), new_id.encode())
    run.state = ConversationState.from_json(raw)
    assert NEW_TICKET_ID not in run.state.to_json().decode()
    return replies


def _staff(run: Run, turn: dict[str, Any]) -> list[Action]:
    ticket = run.tickets[run.ref(turn["ticket"])]
    what = turn["staff"]
    if what == "status":
        ticket.status = TicketStatus(turn["status"])
        ticket.unit = turn.get("unit", ticket.unit)
        return []
    if what == "survey":
        ticket.status = TicketStatus.RESOLVED
        run.state, actions = begin_survey(run.state, ticket.id, run.settings, turn.get("resolution"))
        return actions
    if what == "close_survey":
        ticket.status = TicketStatus.CLOSED
        run.state = close_survey(run.state, ticket.id)
        return []
    if what == "question":
        run.state, actions = begin_staff_question(run.state, ticket.id, turn["question"], run.settings)
        return actions
    raise AssertionError(f"unknown staff step {what!r}")


def _fire(run: Run, turn: dict[str, Any], n: int) -> Inbound:
    timer = run.timers.get(turn["fire"])
    assert timer is not None, f"turn {n}: no timer {turn['fire']!r} is set (have {sorted(run.timers)})"
    run.now = timer.due if "minutes" not in turn else START + timedelta(minutes=turn["minutes"])
    del run.timers[turn["fire"]]
    channel = run.spec.get("channel", "wechat")
    return Inbound(
        channel=channel,
        account="acct",
        sender=run.spec.get("sender", DEFAULT_SENDER[channel]),
        external_id=f"timer-{n}",
        kind=InboundKind.EVENT,
        received_at=run.now,
        event="timer",
        attrs={"timer": timer.name, **timer.payload},
    )


def _check_replies(n: int, turn: dict[str, Any], replies: list[Reply], kind: str) -> None:
    keys = [r.key for r in replies]
    rendered = "\n".join(CATALOGUE.render(r.key, r.params, r.language, "text") for r in replies)
    where = f"turn {n} ({turn.get('text', turn.get('event', turn.get('staff', turn.get('fire', ''))))!r:.60})"
    if "expect" in turn:
        assert keys == turn["expect"], f"{where}: replies {keys}, expected {turn['expect']}\n{rendered}"
    for fragment in turn.get("contains", []):
        assert fragment in rendered, f"{where}: {fragment!r} not in\n{rendered}"
    for fragment in turn.get("not_contains", []):
        assert fragment not in rendered, f"{where}: {fragment!r} unexpectedly in\n{rendered}"
    if kind in ("text", "email", "image", "location") and "staff" not in turn and "fire" not in turn:
        assert replies, f"{where}: a citizen message got no reply"
    for r in replies:
        assert r.params.get("ticket_id", "x") != "", f"{where}: empty ticket id in {r.key}"


def run_transcript(path: Path) -> Run:
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    run = Run(spec, settings_from_mapping(spec.get("settings", {})))
    for t in spec.get("tickets", []):
        run.tickets[t["id"]] = Ticket(
            t["id"], TicketStatus(t["status"]), t["owners"], t.get("query_code", ""), t.get("unit", "")
        )
    for n, turn in enumerate(spec["turns"], 1):
        if "staff" in turn:
            actions, kind = _staff(run, turn), "staff"
            replies = _apply(run, actions, "", "")
        else:
            if "fire" in turn:
                inbound = _fire(run, turn, n)
            else:
                run.now = START + timedelta(minutes=turn.get("minutes", n - 1))
                inbound = _inbound(run, turn, n)
            code = turn.get("query_code", f"{4820 + n}")
            run.state, actions = step_strict(
                run.state, inbound, run.now, run.settings, _context(run, inbound, code)
            )
            kind = inbound.kind.value
            replies = _apply(run, actions, inbound.sender, inbound.channel)
        names = [type(a).__name__ for a in actions]
        for wanted in turn.get("actions", []):
            assert wanted in names, f"turn {n}: action {wanted} missing from {names}"
        for unwanted in turn.get("no_actions", []):
            assert unwanted not in names, f"turn {n}: unexpected action {unwanted} in {names}"
        _check_replies(n, turn, replies, kind)
        if "mode" in turn:
            assert run.state.mode.value == turn["mode"], (
                f"turn {n}: mode {run.state.mode}, expected {turn['mode']}"
            )
        for name, value in turn.get("slots", {}).items():
            assert run.state.value(name) == value, (
                f"turn {n}: slot {name}={run.state.value(name)!r}, expected {value!r}"
            )
    _check_tickets(run, spec)
    return run


def _check_tickets(run: Run, spec: dict[str, Any]) -> None:
    if "tickets_created" in spec:
        assert len(run.created) == spec["tickets_created"], (
            f"created {len(run.created)} tickets: {run.created}"
        )
    for expected in spec.get("expect_tickets", []):
        ticket = run.tickets[run.ref(expected["ticket"])]
        for name, value in expected.get("fields", {}).items():
            assert ticket.fields.get(name) == value, (
                f"ticket field {name}={ticket.fields.get(name)!r}, expected {value!r}"
            )
        for name, fragment in expected.get("fields_contain", {}).items():
            assert fragment in str(ticket.fields.get(name)), (
                f"ticket field {name}={ticket.fields.get(name)!r} lacks {fragment!r}"
            )
        if "supplements" in expected:
            assert [list(s) for s in ticket.supplements] == expected["supplements"], ticket.supplements
        if "ratings" in expected:
            assert [list(r) for r in ticket.ratings] == expected["ratings"], ticket.ratings
        if "answers" in expected:
            assert ticket.answers == expected["answers"], ticket.answers
    if "consent" in spec:
        assert run.consent == spec["consent"], run.consent
    if "links" in spec:
        assert run.links == spec["links"], run.links
    if "handoffs" in spec:
        assert [h.reason for h in run.handoffs] == spec["handoffs"], run.handoffs
