"""The conversation engine: ``step(state, inbound, now, settings, context) -> (state, actions)``.

Pure (STYLE.md 9): no I/O, no clock (``now`` comes in), no randomness (the query code for a
ticket filed this turn comes in ``context``). The caller loads the state and the ticket summaries
the turn may need (:func:`ticket_ids_mentioned` says which), calls :func:`step`, and applies the
returned actions in one store transaction.

Order of precedence within a turn, and why:
1. consent keywords (SMS STOP/START/HELP) — a legal duty, never ticket text;
2. events (subscribe, menu clicks, location reports, timers);
3. commands (help, cancel, human, status, correction, new report) — they work in every mode;
4. the confirmation answer (1/2/0) when a summary is shown — before the survey, so "1" confirms;
5. a comment after a low rating, a survey rating, a unit's pending question (only when idle);
6. otherwise: hand-off follow-up, the open draft, a supplement to the open ticket, or a new draft.
:func:`step` never raises: any internal failure is answered with a polite "not understood".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from channels.base import Inbound, InboundKind, MediaRef
from conversation import drafting as df
from conversation import survey
from conversation.actions import (
    Action,
    AnswerStaffQuestion,
    CancelTimer,
    HandToHuman,
    RecordConsent,
    Reply,
)
from conversation.commands import Command, Parsed, parse_command
from conversation.handlers import open_ticket, open_ticket_id, reprompt, run_command, supplement
from conversation.settings import EngineSettings
from conversation.state import ConversationState, KnownLocation, Mode, SlotValue
from conversation.status import list_own, ticket_ids_mentioned
from conversation.text import detect_language, meaningful_count, squash
from conversation.turn import TicketSummary, Turn, TurnContext

__all__ = ["TicketSummary", "TurnContext", "step", "step_strict", "ticket_ids_mentioned"]

_CONFIRM = {
    "1",
    "确认",
    "确定",
    "是",
    "是的",
    "对",
    "提交",
    "确认提交",
    "好",
    "好的",
    "yes",
    "y",
    "ok",
    "confirm",
    "submit",
}
_EDIT = {"2", "修改", "改", "edit", "change"}
_ABORT = {"0", "取消", "cancel", "no"}
_EMPTY_CONTEXT = TurnContext()


def step(
    state: ConversationState,
    inbound: Inbound,
    now: datetime,
    settings: EngineSettings,
    context: TurnContext = _EMPTY_CONTEXT,
) -> tuple[ConversationState, list[Action]]:
    try:
        return step_strict(state, inbound, now, settings, context)
    except Exception:  # a citizen must always get an answer; the state stays as it was
        lang = state.language or settings.language
        return state, [Reply("not_understood", {}, language=lang)]


def step_strict(
    state: ConversationState,
    inbound: Inbound,
    now: datetime,
    settings: EngineSettings,
    context: TurnContext = _EMPTY_CONTEXT,
) -> tuple[ConversationState, list[Action]]:
    """:func:`step` without the safety net (tests use it so a bug cannot hide)."""
    turn = Turn(state.evolve(channel=inbound.channel), inbound, now, settings, context)
    kind = inbound.kind
    if kind == InboundKind.CONSENT:
        _consent(turn)
    elif kind == InboundKind.EVENT:
        _event(turn)
    elif kind == InboundKind.LOCATION and inbound.location is not None:
        _location_message(turn)
    else:
        text = inbound.text
        if kind == InboundKind.EMAIL:
            text = _email_text(inbound)
        _text(turn, text, inbound.media)
    return turn.state, turn.actions


# -- consent and events -------------------------------------------------------------------------


def _consent(turn: Turn) -> None:
    event = turn.inbound.event or ""
    if event == "opt_out":
        turn.state = replace(turn.state, sms_opted_out=True)
        turn.do(RecordConsent(opt_in=False))
        turn.say("sms_opt_out")
    elif event == "opt_in":
        turn.state = replace(turn.state, sms_opted_out=False)
        turn.do(RecordConsent(opt_in=True))
        turn.say("sms_opt_in")
    else:
        turn.say("sms_help")


def _event(turn: Turn) -> None:
    inbound, event = turn.inbound, (turn.inbound.event or "").lower()
    if event in ("subscribe", "scan"):
        entry = inbound.entry_point or inbound.attrs.get("entry_point") or inbound.attrs.get("scene") or None
        if entry:
            turn.state = replace(turn.state, entry_point=entry)
            if entry == "enterprise" and turn.state.mode == Mode.IDLE:
                turn.state = replace(turn.state, intake_type="enterprise")
        turn.say("welcome_enterprise" if turn.state.entry_point == "enterprise" else "welcome")
        reprompt(turn)
    elif event == "click":
        key = inbound.attrs.get("click_key", "")
        if key == "new_report":
            run_command(turn, Parsed(Command.NEW_REPORT))
        elif key == "my_tickets":
            list_own(turn)
        else:
            turn.say("help")
    elif event == "location":
        _remember_location(turn)
    elif event == "timer":
        _timer(turn)
    elif event == "unsupported":
        turn.say("not_understood")
        reprompt(turn)


def _remember_location(turn: Turn) -> None:
    loc, attrs = turn.inbound.location, turn.inbound.attrs
    try:
        lat = loc.latitude if loc else float(attrs.get("latitude", ""))
        lon = loc.longitude if loc else float(attrs.get("longitude", ""))
    except ValueError:
        return
    label = (loc.label if loc else "") or attrs.get("label", "") or f"{lat:.5f},{lon:.5f}"
    turn.state = replace(turn.state, last_location=KnownLocation(lat, lon, label, turn.ts))


def _timer(turn: Turn) -> None:
    name, draft = turn.inbound.attrs.get("timer", ""), turn.inbound.attrs.get("draft", "")
    open_draft = turn.state.mode in (Mode.COLLECTING, Mode.CONFIRMING) and draft == turn.state.draft_id
    if not open_draft:
        return  # a stale timer: the draft it was set for is gone
    if name == df.REMINDER:
        turn.say("draft_reminder")
        reprompt(turn)
    elif name == df.EXPIRY:
        turn.state = turn.state.clear_draft()
        turn.do(CancelTimer(df.REMINDER))
        turn.say("draft_expired", hours=str(int(turn.settings.draft_expiry_after.total_seconds() // 3600)))


def _location_message(turn: Turn) -> None:
    loc = turn.inbound.location
    assert loc is not None
    label = loc.label or f"{loc.latitude:.5f},{loc.longitude:.5f}"
    _remember_location(turn)
    s = turn.state
    if s.mode == Mode.IDLE and open_ticket(turn) is not None:
        supplement(turn, f"{label} ({loc.latitude:.5f},{loc.longitude:.5f})", ())
        return
    if s.mode not in (Mode.COLLECTING, Mode.CONFIRMING):
        df.start_draft(turn)
    if turn.state.slot("location") is None or turn.state.asking == "location":
        turn.state = turn.state.with_slot(
            "location", SlotValue(label, "location", turn.ts, loc.latitude, loc.longitude)
        )
    df.arm_timers(turn)
    if turn.state.mode == Mode.CONFIRMING:
        df.show_summary(turn)
    else:
        df.next_step(turn)


# -- text ------------------------------------------------------------------------------------


def _email_text(inbound: Inbound) -> str:
    lines = []
    for line in inbound.text.splitlines():
        if line.strip().startswith(("-----Original", "-----原始邮件")):
            break  # everything below is the quoted earlier mail
        if not line.startswith(">"):
            lines.append(line)
    body = "\n".join(lines).strip()
    subject = inbound.attrs.get("subject", "").strip()
    if subject and squash(subject) not in squash(body) and not subject.lower().startswith(("re:", "回复")):
        body = f"{subject}\n{body}" if body else subject
    return body


def _text(turn: Turn, text: str, media: tuple[MediaRef, ...]) -> None:
    lang = detect_language(text)
    if lang is not None:
        turn.state = turn.state.evolve(language=lang)
    text = text.strip()
    if not text and not media:
        turn.say("empty_message")
        reprompt(turn)
        return
    # Slots are read from the whole message (the address often comes last); only what is kept as
    # text is cut to the limit. A bound still applies so a pathological input cannot cost much.
    truncated = len(text) > turn.settings.max_text_chars
    text = text[: turn.settings.max_text_chars * 5]
    command = parse_command(text, turn.settings.ticket_prefix) if text else None
    if turn.state.mode == Mode.CONFIRMING and squash(text) in (_CONFIRM | _EDIT | _ABORT):
        command = None
    if command is not None:
        turn.state = turn.state.evolve(comment_for=None)
        run_command(turn, command)
    else:
        _message(turn, text, media)
    if truncated:
        turn.say("long_text_truncated", max_chars=str(turn.settings.max_text_chars))
    if not turn.replied():
        turn.say("not_understood")


def _message(turn: Turn, text: str, media: tuple[MediaRef, ...]) -> None:
    s = turn.state
    if s.mode == Mode.CONFIRMING:
        _confirm(turn, text)
        return
    if s.comment_for is not None and s.mode == Mode.IDLE and text:
        survey.take_comment(turn, text)
        return
    turn.state = s.evolve(comment_for=None)
    rating = survey.parse_rating(text) if s.pending_survey else None
    menu_digit = s.mode == Mode.COLLECTING and s.asking == "category" and squash(text).isdigit()
    if rating is not None and not menu_digit:
        survey.take_rating(turn, rating)
        return
    if s.pending_question is not None and s.mode == Mode.IDLE:
        question = s.pending_question
        turn.state = replace(turn.state, pending_question=None)
        turn.do(AnswerStaffQuestion(question.ticket_id, text[: turn.settings.max_text_chars], media))
        turn.say("staff_answer_received", ticket_id=question.ticket_id)
        return
    if s.mode == Mode.HANDED_TO_HUMAN:
        turn.do(HandToHuman("follow_up", open_ticket_id(turn), text[: turn.settings.max_text_chars]))
        turn.say("handoff_waiting")
        return
    if s.mode == Mode.COLLECTING:
        df.collect(turn, text, media)
        return
    if open_ticket(turn) is not None:
        supplement(turn, text, media)
        return
    if not media and meaningful_count(text) == 0:
        turn.say("not_understood")
        return
    df.start_draft(turn)
    df.collect(turn, text, media)


def _confirm(turn: Turn, text: str) -> None:
    key = squash(text)
    if key in _CONFIRM:
        df.file_ticket(turn)
    elif key in _EDIT:
        turn.say("edit_which")
    elif key in _ABORT:
        run_command(turn, Parsed(Command.CANCEL))
    else:
        tries = turn.state.tries + 1
        turn.state = replace(turn.state, tries=0 if tries >= turn.settings.max_tries else tries)
        turn.say("handoff_offer" if tries >= turn.settings.max_tries else "confirm_hint")
