"""The satisfaction survey dialogue and a unit's question to the citizen.

The staff side starts both (:func:`begin_survey`, :func:`begin_staff_question`) and pushes the
replies they return; the engine recognises the answers in later turns. Ratings: 5 very
satisfied … 1 very unsatisfied. After a low rating (≤ 2) a comment is invited; anything that is
not a rating leaves the survey pending and is handled as a normal message.
"""

from __future__ import annotations

from dataclasses import replace

from channels.base import Purpose
from conversation.actions import Action, RecordRating, Reply
from conversation.settings import EngineSettings
from conversation.state import ConversationState, StaffQuestion
from conversation.text import squash
from conversation.turn import Turn

# Longest first, so 非常不满意 is not read as 不满意, nor 不满意 as 满意.
_WORDS: tuple[tuple[str, int], ...] = tuple(
    sorted(
        {
            "非常满意": 5,
            "很满意": 5,
            "特别满意": 5,
            "十分满意": 5,
            "超级满意": 5,
            "非常好": 5,
            "verysatisfied": 5,
            "excellent": 5,
            "满意": 4,
            "比较满意": 4,
            "挺满意": 4,
            "还算满意": 4,
            "满意的": 4,
            "satisfied": 4,
            "good": 4,
            "基本满意": 3,
            "一般": 3,
            "还行": 3,
            "还可以": 3,
            "凑合": 3,
            "neutral": 3,
            "ok": 3,
            "okay": 3,
            "不满意": 2,
            "不太满意": 2,
            "不大满意": 2,
            "不是很满意": 2,
            "dissatisfied": 2,
            "unsatisfied": 2,
            "notsatisfied": 2,
            "bad": 2,
            "非常不满意": 1,
            "很不满意": 1,
            "特别不满意": 1,
            "极不满意": 1,
            "十分不满意": 1,
            "太差了": 1,
            "很差": 1,
            "verydissatisfied": 1,
            "veryunsatisfied": 1,
            "terrible": 1,
        }.items(),
        key=lambda kv: -len(kv[0]),
    )
)
_NO_COMMENT = {"没有", "无", "不用", "不用了", "没了", "算了", "no", "none", "nothing", "nope"}
LOW = 2


def parse_rating(text: str) -> int | None:
    key = squash(text)
    for suffix in ("分", "星", "stars", "star", "points"):
        if key.endswith(suffix) and key[: -len(suffix)].isdigit():
            key = key[: -len(suffix)]
    if key in {"1", "2", "3", "4", "5"}:
        return int(key)
    return next((score for word, score in _WORDS if key == word), None)


def begin_survey(
    state: ConversationState, ticket_id: str, settings: EngineSettings, resolution: str | None = None
) -> tuple[ConversationState, list[Action]]:
    """The ticket was resolved: ask for a rating (and announce the resolution when given)."""
    lang = state.language or settings.language
    actions: list[Action] = []
    if resolution is not None:
        actions.append(
            Reply("status.resolved", {"ticket_id": ticket_id, "text": resolution}, Purpose.STATUS, lang)
        )
    actions.append(Reply("survey.ask", {"ticket_id": ticket_id}, Purpose.SURVEY, lang))
    return replace(state, pending_survey=ticket_id), actions


def close_survey(state: ConversationState, ticket_id: str) -> ConversationState:
    """The survey expired unrated (the staff side closes the ticket): stop waiting for a rating."""
    if state.pending_survey != ticket_id:
        return state
    return replace(state, pending_survey=None)


def begin_staff_question(
    state: ConversationState, ticket_id: str, question: str, settings: EngineSettings
) -> tuple[ConversationState, list[Action]]:
    """A unit asks the citizen for more information about a ticket."""
    lang = state.language or settings.language
    reply = Reply(
        "status.more_info", {"ticket_id": ticket_id, "question": question}, Purpose.STAFF_REPLY, lang
    )
    return replace(state, pending_question=StaffQuestion(ticket_id, question)), [reply]


def take_rating(turn: Turn, rating: int) -> None:
    ticket_id = turn.state.pending_survey
    if ticket_id is None:
        return
    turn.do(RecordRating(ticket_id, rating))
    low = rating <= LOW
    turn.state = replace(turn.state, pending_survey=None, comment_for=(ticket_id, rating) if low else None)
    turn.say("survey_thanks_low" if low else "survey_thanks", ticket_id=ticket_id, rating=str(rating))


def take_comment(turn: Turn, text: str) -> None:
    if turn.state.comment_for is None:
        return
    ticket_id, rating = turn.state.comment_for
    turn.state = replace(turn.state, comment_for=None)
    if squash(text) in _NO_COMMENT:
        turn.say("survey_comment_skipped", ticket_id=ticket_id)
        return
    turn.do(RecordRating(ticket_id, rating, text.strip()[: turn.settings.max_text_chars], amend=True))
    turn.say("survey_comment_thanks", ticket_id=ticket_id)
