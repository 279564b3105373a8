"""Every SMS rendering of the catalogue fits in two segments with realistic parameters.

Parameters are the longest realistic values (an id of a 4-letter tenant prefix with a 6-digit
daily sequence, a 20-character unit name …). Free-text parameters (a unit's answer, a reason)
can be any length: the SMS renderer cuts them with ``channels.sms.segments.fit_params``; the test
requires that at least 20 characters of each survive, so the text still says something.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

import conversation
from channels.sms.segments import count_segments, fit_params
from conversation.catalogue import SAMPLE_PARAMS, Catalogue

MAX_SEGMENTS = 2
LONG = (
    "经现场核查，该路段路灯因线路老化导致故障，我局已安排维修人员于今日下午更换线路及灯具，预计明日恢复照明，给您带来不便敬请谅解。"
    * 3
)

REALISTIC = {
    "ticket_id": "SNXX-261125-123456-7",
    "surviving_id": "SNXX-261125-999999-9",
    "query_code": "482913",
    "unit": "睢宁县住房和城乡建设局城市管理综合执法大队"[:20],
    "days": "15",
    "deadline": "2026-12-31",
    "hours": "72",
    "minutes": "30",
    "count": "12",
    "rating": "5",
    "max_chars": "2000",
    "phone": "+8613812345678",
    "category": "城乡建设与城市管理",
    "company": "睢宁县某某精密机械制造有限公司",
    "location": "睢宁县睢城街道人民路与八一路交叉口往东200米",
    "location_label": "睢宁县睢城街道人民路188号",
    "menu": "1城市管理 2环境保护 3交通出行 4住房 5其他",
    "channel": "微信",
    "value": "睢宁县睢城街道人民路188号",
    "field": "联系地址",
}
FREE_TEXT = {"answer": LONG, "resolution": LONG, "question": LONG, "reason": LONG, "description": LONG}
MIN_SURVIVING = 20

LANGUAGES = tuple(
    sorted(p.stem for p in Path(conversation.__file__).parent.joinpath("catalogue").glob("*.toml"))
)
CATALOGUE = Catalogue.load(LANGUAGES)
CASES = [(lang, key) for lang in CATALOGUE.entries for key in sorted(CATALOGUE.keys(lang))]


def test_known_segment_counts() -> None:
    """Hand-counted values from PROTOCOLS.md B.7 (70 × 路 is one segment, 71 two …)."""
    table = [
        ("路" * 70, ("UCS-2", 1)),
        ("路" * 71, ("UCS-2", 2)),
        ("路" * 134, ("UCS-2", 2)),
        ("路" * 135, ("UCS-2", 3)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # extension characters count two septets
        ("€" * 81, ("GSM-7", 2)),
        ("😀" * 35, ("UCS-2", 1)),  # an emoji is two UTF-16 units
        ("😀" * 36, ("UCS-2", 2)),
        ("a" * 66 + "😀", ("UCS-2", 1)),
        ("Hello 路", ("UCS-2", 1)),
        ("", ("GSM-7", 1)),
    ]
    for text, expected in table:
        assert count_segments(text) == expected, text


@pytest.mark.parametrize(("lang", "key"), CASES, ids=[f"{lang}:{key}" for lang, key in CASES])
def test_sms_rendering_fits_two_segments(lang: str, key: str) -> None:
    names = CATALOGUE.params_of(key, lang)
    params = {n: REALISTIC.get(n) or FREE_TEXT.get(n) or SAMPLE_PARAMS.get(n) or "x" * 20 for n in names}

    def render(values: Mapping[str, str]) -> str:
        return CATALOGUE.render(key, values, lang, variant="sms")

    fitted = fit_params(render, params, FREE_TEXT)
    text = render(fitted)
    encoding, segments = count_segments(text)
    assert segments <= MAX_SEGMENTS, (
        f"{lang}:{key} is {segments} {encoding} segments ({len(text)} chars): {text}"
    )
    for name in FREE_TEXT.keys() & names:
        assert len(fitted[name]) >= MIN_SURVIVING, (
            f"{lang}:{key} leaves only {len(fitted[name])} chars of {name}"
        )
