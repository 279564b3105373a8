"""Every catalogue key the staff side pushes exists in every catalogue language and renders in
every variant with exactly the parameters the push passes; the SMS variant fits two segments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conversation.catalogue import SMS_MAX_CHARS, VARIANTS, Catalogue
from gateway.staff.pushes import PUSH_KEYS

STAFF_SOURCES = Path(__file__).resolve().parents[2] / "gateway" / "staff"
# Realistic values (long unit name, long id) for the length check; written here, not imported.
VALUES = {
    "ticket_id": "SNXX-261125-123456-7",
    "query_code": "482913",
    "unit": "睢宁县住房和城乡建设局城市管理",
    "text": "已安排维修人员今日下午更换灯具。",
    "attempt": "2",
    "reason": "不属于本平台受理范围",
    "into": "SNXX-261125-123457-5",
    "question": "请提供路灯杆上的编号。",
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def test_every_key_used_in_the_code_is_listed() -> None:
    """A push key written anywhere in gateway/staff must be in PUSH_KEYS (which the next test
    renders), so a new push cannot skip the catalogue check."""
    used: set[str] = set()
    for path in STAFF_SOURCES.glob("*.py"):
        used |= set(re.findall(r'"((?:status|survey|ticket)\.[a-z_]+)"', path.read_text(encoding="utf-8")))
    assert used and used <= set(PUSH_KEYS), sorted(used - set(PUSH_KEYS))


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("key", sorted(PUSH_KEYS))
def test_push_key_renders(catalogue: Catalogue, language: str, key: str) -> None:
    params = {name: VALUES[name] for name in ("ticket_id", *PUSH_KEYS[key])}
    assert key in catalogue.keys(language)
    assert catalogue.params_of(key, language) <= set(params), "the push does not pass every parameter"
    for variant in VARIANTS:
        text = catalogue.render(key, params, language, variant)
        assert text.strip()
    sms = catalogue.render(key, params, language, "sms")
    assert len(sms) <= SMS_MAX_CHARS, (len(sms), sms)
