"""Property tests (hypothesis): whatever a citizen types, the engine answers and keeps what it had.

- any text never raises (``step_strict``, without the safety net of ``step``);
- every text message gets at least one reply, and every reply renders to non-empty text;
- a slot filled earlier is never lost or changed, except by an explicit correction of that slot,
  a cancel, or the draft being filed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.base import Inbound, InboundKind
from conversation.actions import CreateTicket, Reply
from conversation.catalogue import Catalogue
from conversation.commands import Command, parse_command
from conversation.engine import TicketSummary, TurnContext, step_strict
from conversation.settings import default_settings
from conversation.state import ConversationState, Mode, SlotValue
from store.model import TicketStatus

SETTINGS = default_settings()
CATALOGUE = Catalogue.load()
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
SENDER = "wechat:wxsandbox000000000:o_prop"

FRAGMENTS = [
    "1",
    "2",
    "0",
    "3",
    "５",
    "取消",
    "人工",
    "继续",
    "帮助",
    "？",
    "查询",
    "进度",
    "新问题",
    "我要反映",
    "修改地址 人民路1号",
    "改电话 13900001111",
    "修改电话",
    "修改描述",
    "满意",
    "不满意",
    "非常满意",
    "没有",
    "人民路88号",
    "路灯坏了三天",
    "13812345678",
    "0516-88881234",
    "１３８１２３４５６７８",
    "91350100M000100Y43",
    "91350100M000100Y44",
    "睢宁县新科机械有限公司",
    "我们公司",
    "查询 SN-261120-0001-8 4821",
    "SN-261120-0001-3",
    "status",
    "help",
    "cancel",
    "yes",
    "👍",
    "😡😡😡",
    "",
    "   ",
    "\u3000",
    "\n",
    "a" * 2500,
    "地址：",
    "电话：",
    "跳过",
    "change address to 88 Renmin Road",
]
TEXTS = st.one_of(
    st.text(max_size=300),
    st.sampled_from(FRAGMENTS),
    st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join),
)


def _inbound(text: str, n: int, channel: str = "wechat") -> Inbound:
    sender = {"wechat": SENDER, "sms": "tel:+8613912345678", "email": "mailto:p@example.com"}[channel]
    kind = InboundKind.EMAIL if channel == "email" else InboundKind.TEXT
    return Inbound(channel, "acct", sender, f"ext-{n}", kind, NOW + timedelta(minutes=n), text=text)


def _states() -> list[ConversationState]:
    base = ConversationState()
    filled = (
        ("description", SlotValue("路灯坏了三天", "message", 0.0)),
        ("location", SlotValue("人民路88号", "message", 0.0)),
    )
    collecting = replace(
        base, mode=Mode.COLLECTING, slots=filled, asking="phone", draft_id="d1", draft_started=0.0
    )
    confirming = replace(
        collecting,
        mode=Mode.CONFIRMING,
        asking=None,
        slots=(
            *filled,
            ("phone", SlotValue("13812345678", "answer", 0.0)),
            ("category", SlotValue("城市管理", "message", 0.0)),
        ),
    )
    return [
        base,
        collecting,
        confirming,
        replace(base, pending_survey="SN-261120-0001-8", current_ticket="SN-261120-0001-8"),
        replace(base, comment_for=("SN-261120-0001-8", 1)),
        replace(collecting, mode=Mode.HANDED_TO_HUMAN),
        replace(base, current_ticket="SN-261120-0001-8"),
        replace(base, intake_type="enterprise", entry_point="enterprise"),
    ]


CONTEXT = TurnContext(
    (TicketSummary("SN-261120-0001-8", TicketStatus.ASSIGNED, "县城管局", "4821", (SENDER,), NOW),), "1234"
)


def _check_replies(actions: Sequence[object]) -> None:
    replies = [a for a in actions if isinstance(a, Reply)]
    assert replies, "a text message got no reply"
    for r in replies:
        for variant in ("text", "sms"):
            assert CATALOGUE.render(r.key, r.params, r.language, variant).strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, which=st.integers(0, 7), channel=st.sampled_from(["wechat", "sms", "email"]))
def test_any_text_is_answered_and_never_raises(text: str, which: int, channel: str) -> None:
    state = _states()[which]
    new_state, actions = step_strict(state, _inbound(text, 1, channel), NOW, SETTINGS, CONTEXT)
    _check_replies(actions)
    assert ConversationState.from_json(new_state.to_json()) == new_state


def _explicitly_cleared(state: ConversationState, text: str, actions: Sequence[object]) -> set[str]:
    """Slots the citizen explicitly asked to change or drop in this turn."""
    if any(isinstance(a, CreateTicket) for a in actions):
        return set(state.filled())
    parsed = parse_command(text, SETTINGS.ticket_prefix)
    if parsed is not None and parsed.command == Command.CORRECT:
        return {parsed.slot}
    if parsed is not None and parsed.command == Command.CANCEL:
        return set(state.filled())
    if state.mode == Mode.CONFIRMING and text.strip() in ("0", "取消"):
        return set(state.filled())
    return set()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXTS, min_size=1, max_size=8), which=st.integers(0, 7))
def test_filled_slots_are_never_lost(texts: list[str], which: int) -> None:
    state = _states()[which]
    for n, text in enumerate(texts):
        old, before = state, dict(state.slots)
        state, actions = step_strict(state, _inbound(text, n), NOW + timedelta(minutes=n), SETTINGS, CONTEXT)
        _check_replies(actions)
        allowed = _explicitly_cleared(old, text, actions)
        after = dict(state.slots)
        for name, value in before.items():
            if name in allowed:
                continue
            assert name in after, f"slot {name} lost after {text!r}"
            assert after[name].value == value.value, f"slot {name} changed after {text!r}"


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_events_and_media_never_raise(text: str) -> None:
    for kind, event in (
        (InboundKind.EVENT, "subscribe"),
        (InboundKind.EVENT, "click"),
        (InboundKind.IMAGE, None),
        (InboundKind.VOICE, None),
        (InboundKind.EVENT, "timer"),
        (InboundKind.CONSENT, "opt_out"),
    ):
        inbound = Inbound(
            "wechat",
            "acct",
            SENDER,
            "e1",
            kind,
            NOW,
            text=text,
            event=event,
            attrs={"click_key": text, "entry_point": text[:10], "timer": text, "draft": text},
        )
        for state in _states():
            step_strict(state, inbound, NOW, SETTINGS, CONTEXT)
