"""Command handling and the small helpers the engine's dialogue paths share: the open ticket
(for supplements), re-prompting an open draft, and each command (help, cancel, human, resume,
status, new report, correction)."""

from __future__ import annotations

from dataclasses import replace

from channels.base import MediaRef
from conversation import drafting as df
from conversation.actions import AppendSupplement, HandToHuman
from conversation.commands import Command, Parsed
from conversation.state import Mode, SlotValue
from conversation.status import status_query
from conversation.turn import TicketSummary, Turn


def open_ticket(turn: Turn) -> TicketSummary | None:
    summary = turn.context.ticket(turn.state.current_ticket)
    return summary if summary is not None and summary.is_open else None


def open_ticket_id(turn: Turn) -> str | None:
    summary = open_ticket(turn)
    return summary.id if summary else None


def supplement(turn: Turn, text: str, media: tuple[MediaRef, ...]) -> None:
    summary = open_ticket(turn)
    assert summary is not None
    turn.do(AppendSupplement(summary.id, text[: turn.settings.max_text_chars], media))
    turn.say("supplement_added", ticket_id=summary.id)


def reprompt(turn: Turn) -> None:
    """Remind the citizen where an open draft stands."""
    if turn.state.mode == Mode.CONFIRMING:
        df.show_summary(turn)
    elif turn.state.mode == Mode.COLLECTING:
        todo = df.missing(turn)
        if todo:
            df.prompt(turn, todo[0])


# -- commands -----------------------------------------------------------------------------------


def has_draft(turn: Turn) -> bool:
    return turn.state.mode in (Mode.COLLECTING, Mode.CONFIRMING) or (
        turn.state.mode == Mode.HANDED_TO_HUMAN and bool(turn.state.draft_id)
    )


def run_command(turn: Turn, cmd: Parsed) -> None:
    c = cmd.command
    if c == Command.HELP:
        turn.say("help")
        reprompt(turn)
    elif c == Command.CANCEL:
        if has_draft(turn):
            turn.state = turn.state.clear_draft()
            df.cancel_timers(turn)
            turn.say("draft_cancelled")
        else:
            turn.state = replace(turn.state, mode=Mode.IDLE)
            turn.say("nothing_to_cancel")
    elif c == Command.HUMAN:
        turn.do(HandToHuman("requested", open_ticket_id(turn)))
        turn.state = replace(turn.state, mode=Mode.HANDED_TO_HUMAN)
        turn.say("handoff")
    elif c == Command.RESUME:
        _resume(turn)
    elif c == Command.STATUS:
        status_query(turn, cmd.rest)
        reprompt(turn)
    elif c == Command.NEW_REPORT:
        _new_report(turn, cmd.rest)
    elif c == Command.CORRECT:
        _correct(turn, cmd.slot, cmd.rest)


def _resume(turn: Turn) -> None:
    if turn.state.mode == Mode.HANDED_TO_HUMAN:
        mode = Mode.COLLECTING if turn.state.draft_id else Mode.IDLE
        turn.state = replace(turn.state, mode=mode)
    if turn.state.mode == Mode.IDLE:
        turn.say("resumed_idle")
    else:
        turn.say("resumed")
        df.next_step(turn)


def _new_report(turn: Turn, rest: str) -> None:
    if has_draft(turn):
        turn.state = replace(turn.state, mode=Mode.COLLECTING)
        turn.say("draft_in_progress")
        if rest:
            df.collect(turn, rest)
        else:
            df.next_step(turn)
        return
    df.start_draft(turn)
    turn.state = replace(turn.state, current_ticket=None)
    if rest:
        df.collect(turn, rest)
    else:
        df.arm_timers(turn)
        df.next_step(turn)


def _correct(turn: Turn, slot: str, value: str) -> None:
    if not has_draft(turn):
        if open_ticket(turn) is not None and value:
            supplement(turn, f"{slot}: {value}", ())
        else:
            turn.say("nothing_to_correct")
        return
    spec = turn.form.spec(slot)
    if spec is None:
        turn.say("nothing_to_correct")
        return
    was_confirming = turn.state.mode == Mode.CONFIRMING
    new = df.answer_for(turn, spec, value) if value else None
    df.arm_timers(turn)
    if new is None:
        turn.state = replace(turn.state, mode=Mode.COLLECTING, asking=spec.name, tries=0)
        df.prompt(turn, spec, invalid=bool(value))
        if not value:
            # Forget the old value only now that the citizen is asked for a new one.
            turn.state = replace(turn.state, slots=tuple((k, v) for k, v in turn.state.slots if k != slot))
        return
    turn.state = turn.state.with_slot(spec.name, SlotValue(new, "correction", turn.ts))
    turn.say(f"corrected_{spec.validator}", value=new)
    if was_confirming:
        turn.state = replace(turn.state, mode=Mode.COLLECTING, asking=None)
    df.next_step(turn)
