"""The engine's parts on their own: settings loading, state JSON, credit codes, working days,
extraction and command recognition, with values worked out by hand."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from channels.base import MediaRef
from conversation.creditcode import ALPHABET, is_valid_credit_code
from conversation.drafting import add_working_days
from conversation.engine import ticket_ids_mentioned
from conversation.extract import extract, find_locations, find_phones
from conversation.settings import default_settings, settings_from_mapping
from conversation.state import ConversationState, FiledTicket, KnownLocation, Mode, SlotValue, StaffQuestion
from conversation.status import query_code_in

SETTINGS = default_settings()


def test_defaults_follow_the_issue() -> None:
    s = SETTINGS
    assert s.max_tries == 3 and s.reply_working_days == 5 and s.ticket_prefix == "SN"
    assert s.draft_reminder_after == timedelta(minutes=30) and s.draft_expiry_after == timedelta(hours=24)
    assert s.confirm_channels == {"wechat", "sms"}
    assert [c.name for c in s.categories] == [
        "城市管理",
        "环境保护",
        "交通出行",
        "住房建设",
        "劳动社保",
        "教育",
        "医疗卫生",
        "市场监管",
        "农业农村",
        "企业服务",
        "其他",
    ]
    assert [x.name for x in s.form("citizen").slots if x.required] == [
        "description",
        "location",
        "phone",
        "category",
    ]
    assert {"company", "credit_code"} <= {x.name for x in s.form("enterprise").slots}


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"max_tries": 0}, "max_tries"),
        ({"reply_working_days": "five"}, "reply_working_days"),
        ({"language": "fr"}, "language"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"ticket_prefix": "S-N"}, "ticket_prefix"),
        ({"confirm_channels": "wechat"}, "confirm_channels"),
        ({"forms": {"enterprise": {}}}, "forms"),
        (
            {"forms": {"citizen": {"slots": [{"name": "x", "validator": "nope", "prompt": "p"}]}}},
            "forms.citizen.slots[0].validator",
        ),
        ({"categories": [{"keywords": []}]}, "categories[0].name"),
    ],
)
def test_bad_settings_name_the_key(mapping: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as info:
        settings_from_mapping(mapping)
    assert f"'{named}'" in str(info.value)


def test_settings_override() -> None:
    s = settings_from_mapping(
        {"confirm_channels": ["wechat", "sms", "email"], "draft_reminder_minutes": 10, "language": "en"}
    )
    assert (
        "email" in s.confirm_channels
        and s.draft_reminder_after == timedelta(minutes=10)
        and s.language == "en"
    )


def test_state_json_round_trip() -> None:
    state = ConversationState(
        mode=Mode.CONFIRMING,
        slots=(
            ("location", SlotValue("人民路88号", "location", 1.5, 33.9, 117.9)),
            ("phone", SlotValue("138", "channel", 2.0)),
        ),
        asking="phone",
        tries=2,
        intake_type="enterprise",
        entry_point="enterprise",
        language="en",
        draft_id="d",
        draft_started=3.0,
        attachments=(MediaRef("m1", "image/jpeg", 10, "a.jpg"),),
        last_location=KnownLocation(1.0, 2.0, "x", 4.0),
        tickets=(FiledTicket("SN-261120-0001-8", "4821", 5.0),),
        current_ticket="SN-261120-0001-8",
        pending_survey="SN-261120-0001-8",
        comment_for=("SN-261120-0001-8", 2),
        pending_question=StaffQuestion("SN-261120-0001-8", "编号？"),
        sms_opted_out=True,
        channel="sms",
    )
    assert ConversationState.from_json(state.to_json()) == state


def test_state_reads_what_the_staff_side_patches_and_survives_garbage() -> None:
    raw = b'{"pending_survey": {"ticket_id": "SN-1", "attempt": 2}, "pending_question": {"ticket_id": "SN-2", "question": "Q", "asked_by": "staff:1"}}'
    state = ConversationState.from_json(raw)
    assert state.pending_survey == "SN-1" and state.pending_question == StaffQuestion("SN-2", "Q")
    for garbage in (None, b"", b"not json", b"[]", b'{"mode": "flying"}', b'{"slots": [[1]]}'):
        assert ConversationState.from_json(garbage) == ConversationState()


def test_credit_code_check_character() -> None:
    good = "91350100M000100Y43"  # the example in GB 32100-2015
    assert is_valid_credit_code(good)
    assert is_valid_credit_code("９１３５０１００ｍ０００１００ｙ４３")
    # The weights are non-zero modulo the prime 31, so every single substitution is caught.
    for i in range(18):
        for ch in ALPHABET:
            if ch != good[i]:
                assert not is_valid_credit_code(good[:i] + ch + good[i + 1 :]), (i, ch)
    assert not is_valid_credit_code("91350100M000100Y4")  # 17 characters
    assert not is_valid_credit_code("91350100M000100I43")  # I is not in the alphabet


def test_working_days_skip_weekends() -> None:
    assert add_working_days(date(2026, 11, 25), 5) == date(2026, 12, 2)  # Wed -> next Wed
    assert add_working_days(date(2026, 11, 27), 1) == date(2026, 11, 30)  # Fri -> Mon
    assert add_working_days(date(2026, 11, 28), 1) == date(2026, 11, 30)  # Sat -> Mon
    assert add_working_days(date(2026, 11, 29), 10) == date(2026, 12, 11)


@pytest.mark.parametrize(
    ("text", "phones"),
    [
        ("电话13812345678", ["13812345678"]),
        ("138 1234 5678", ["13812345678"]),
        ("138-1234-5678", ["13812345678"]),
        ("+86 138 1234 5678", ["13812345678"]),
        ("１３８１２３４５６７８", ["13812345678"]),
        ("(0516)88881234", ["0516-88881234"]),
        ("025-8888-1234", ["025-88881234"]),
        ("12812345678", []),  # no mobile prefix 12x
        ("1381234567", []),  # ten digits
        ("138123456789", []),  # twelve digits
        ("工单 SN-261125-0042-7", []),
    ],
)
def test_phone_extraction(text: str, phones: list[str]) -> None:
    assert [p for p, _ in find_phones(text)] == phones


@pytest.mark.parametrize(
    ("text", "places"),
    [
        ("我家门口的路灯坏了三天了", []),
        ("在睢城街道人民路88号", ["睢城街道人民路88号"]),
        ("解放路公交站牌倒了", ["解放路"]),
        ("菜市场门口的商贩占道经营", []),
        ("王集镇王集村三组的路坏了", ["王集镇王集村三组"]),
        ("睢宁县", []),
        ("晚上跳广场舞扰民", []),
    ],
)
def test_location_extraction(text: str, places: list[str]) -> None:
    assert find_locations(text) == places


def test_one_message_fills_several_slots() -> None:
    found = extract(
        "我家门口的路灯坏了三天了，在睢城街道人民路88号，电话13812345678", SETTINGS.categories
    ).values
    assert found["location"] == "睢城街道人民路88号" and found["phone"] == "13812345678"
    assert found["category"] == "城市管理" and "13812345678" not in found["description"]


def test_ids_and_query_codes_in_text() -> None:
    assert ticket_ids_mentioned("查询 SN-261120-0001-8 4821", "SN") == ["SN-261120-0001-8"]
    assert ticket_ids_mentioned("查询 SN-261120-0001-3", "SN") == []  # check digit fails
    assert ticket_ids_mentioned("电话 13812345678", "SN") == []
    assert query_code_in("查询 SN-261120-0001-8 4821", "SN-261120-0001-8") == "4821"
    assert query_code_in("查询 SN2611200001８", "SN-261120-0001-8") == ""
