"""The engine's speed-ups change nothing: each fast form is compared with the plain form it
replaced, kept here verbatim as the reference.

- facts about Unicode the shortcuts rely on are checked over every code point (so a Python with
  a newer Unicode database cannot silently break them);
- the fast helpers and regexes are compared with the reference forms on random text (hypothesis)
  drawn from an alphabet rich in what the rules look at: address markers, function words, the
  characters that cancel a marker, company suffixes, digits, full-width forms and punctuation.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conversation import commands, extract, text
from conversation.state import ConversationState, Mode
from store.ticketid import find_ticket_ids

# -- the reference forms (the code before the speed-ups) -------------------------------------------

_WIDTH = {0xFF10 + i: 0x30 + i for i in range(10)}
_WIDTH.update({0xFF21 + i: 0x41 + i for i in range(26)})
_WIDTH.update({0xFF41 + i: 0x61 + i for i in range(26)})
_WIDTH.update(
    {0x3000: 0x20, 0xFF0B: 0x2B, 0xFF0D: 0x2D, 0xFF08: 0x28, 0xFF09: 0x29, 0xFF1A: 0x3A, 0x2014: 0x2D}
)


def ref_fold(s: str) -> str:
    return s.translate(_WIDTH).replace("\r", "\n")


def ref_squash(s: str) -> str:
    folded = unicodedata.normalize("NFKC", s).lower()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def ref_meaningful_count(s: str) -> int:
    return sum(1 for ch in s if unicodedata.category(ch)[0] in "LN")


def ref_cjk_count(s: str) -> int:
    return len(re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", s))


_REF_NAME = r"(?:(?![的了是有我你他她它们很都也就还又在把被]){c})".format(c=r"[\u4e00-\u9fffA-Za-z0-9]")
REF_ADDRESS_RE = re.compile(rf"(?:{_REF_NAME}{{1,12}}?{extract._MARK}{extract._NOT_AFTER})+")
REF_COMPANY_RE = re.compile(
    r"([\u4e00-\u9fffA-Za-z0-9()]{4,30}?(?:股份有限公司|有限责任公司|有限公司|集团公司|集团|合作社|商行|门市部|工作室|事务所|公司|厂))(?=$|[\s,.;!?，。；、:()！？]|的|在|是|位于|有|想|需要|要)"
)
_SEP = r"[\s\-]?"
REF_MOBILE_RE = re.compile(rf"(?<!\d)(?:\+?86{_SEP})?(1[3-9]\d(?:{_SEP}\d){{8}})(?!\d)")
REF_LANDLINE_RE = re.compile(r"(?<!\d)\(?(0\d{2,3})\)?[\s\-]?(\d{3,4}[\s\-]?\d{4})(?!\d)")
REF_PHONE_LABEL_RE = re.compile(
    r"(联系电话|联系方式|手机号码|手机号|电话号码|电话|手机|号码|phone|tel|mobile)\s*[:是为]?\s*$", re.I
)
REF_ENTERPRISE_RE = re.compile(
    r"我们公司|我公司|本公司|我司|我们企业|本企业|我们厂|代表.{0,6}(?:公司|企业)|企业诉求|our company", re.I
)


def ref_cut_after(span: str, markers: Sequence[str]) -> str:
    best = -1
    for marker in markers:
        i = span.rfind(marker)
        if i >= 0 and len(span) - (i + len(marker)) >= 2:
            best = max(best, i + len(marker))
    return span[best:] if best >= 0 else span


def ref_strip_keyword(s: str, keyword: str) -> str | None:
    folded = ref_fold(s).strip()
    pattern = r"\s*".join(re.escape(ch) for ch in keyword)
    m = re.match(rf"{pattern}\b" if keyword.isascii() else pattern, folded, re.I)
    return None if m is None else folded[m.end() :].strip(" :,.，。：")


def ref_parse_command(s: str, prefix: str | None = None) -> commands.Parsed | None:
    C, Parsed = commands.Command, commands.Parsed
    folded = ref_fold(s).strip()
    key = ref_squash(folded)
    if folded in {"?", "？"} or folded.rstrip("?") == "":
        return Parsed(C.HELP) if folded else None
    for command, words in commands._EXACT.items():
        if key in words:
            return Parsed(command)
    m = commands._CORRECT_RE.match(folded)
    if m:
        word = re.sub(r"\s+", "", m.group(1)).lower()
        return Parsed(C.CORRECT, m.group(2).strip(), commands.SLOT_WORDS.get(word, "credit_code"))
    for keyword in commands._STATUS:
        rest = ref_strip_keyword(folded, keyword)
        if rest is not None and (
            ref_squash(rest) in commands._STATUS_FILLERS
            or find_ticket_ids(rest, prefix)
            or ref_squash(rest).isdigit()
        ):
            return Parsed(C.STATUS, rest)
    if find_ticket_ids(folded, prefix) and commands._only_id_and_code(folded):
        return Parsed(C.STATUS, folded)
    for keyword in commands._NEW_REPORT:
        rest = ref_strip_keyword(folded, keyword)
        if rest is not None and (keyword != "new" or ref_squash(rest) in {"", "report", "problem"}):
            return Parsed(C.NEW_REPORT, "" if keyword == "new" else rest)
    return None


# -- Unicode facts, over every code point ---------------------------------------------------------

EVERY_CHAR = "".join(map(chr, range(sys.maxunicode + 1)))


def test_alnum_class_is_exactly_categories_l_and_n() -> None:
    fast = "".join(text._ALNUM.findall(EVERY_CHAR))
    slow = "".join(ch for ch in EVERY_CHAR if unicodedata.category(ch)[0] in "LN")
    assert fast == slow


def test_basic_ideographs_survive_squash_one_for_one() -> None:
    """What commands._could_be_exact relies on: NFKC and lower() keep U+4E00-U+9FFF as they
    are, and no canonical composition takes one of them as either half."""
    basic = "".join(map(chr, range(0x4E00, 0xA000)))
    assert unicodedata.normalize("NFKC", basic) == basic
    assert basic.lower() == basic
    assert all(unicodedata.category(ch) == "Lo" for ch in basic)
    for ch in EVERY_CHAR:
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            assert not any(0x4E00 <= int(p, 16) <= 0x9FFF for p in parts), hex(ord(ch))


# -- fast forms against reference forms on random text ----------------------------------------------

PIECES = [
    *"的了是有我你他她它们很都也就还又在把被",
    *"路街区市县镇乡村巷弄号栋幢座室组省",
    "街道",
    "社区",
    "小区",
    "花园",
    "新村",
    "大厦",
    "广场",
    "号楼",
    "单元",
    "自治区",
    "开发区",
    *"灯面边段况过线费由障程径标场民长政容委域别码召称坊级人子舞管",
    "有限公司",
    "股份有限公司",
    "集团",
    "公司",
    "厂",
    "合作社",
    "工作室",
    "门市部",
    "商行",
    "我们公司",
    "本企业",
    "代表",
    "企业诉求",
    "our company",
    "Our Company",
    "电话",
    "手机号",
    "联系方式",
    "号码",
    "phone",
    "Tel",
    "MOBILE",
    ":",
    "：",
    "是",
    "人民",
    "幸福家园",
    "东风",
    "建设",
    "88",
    "3",
    "0",
    "1",
    "8",
    "+86",
    "+",
    "(",
    ")",
    "-",
    " ",
    "13812345678",
    "138 1234 5678",
    "0516-88881234",
    "(0516)8888 1234",
    "１３８１２３４５６７８",
    "０５１６－８８８８１２３４",
    "\u3000",
    "\u2014",
    "\r\n",
    "\n",
    "，",
    "。",
    "！",
    "？",
    "?",
    "地址",
    "位于",
    "在",
    "反映",
    "家住",
    "我家",
    "晚上",
    "查询",
    "进度",
    "查询进度",
    "一下",
    "新问题",
    "我要反映",
    "new",
    " report",
    "new problem",
    "帮助",
    "help",
    "HELP",
    "取消",
    "cancel",
    "人工",
    "继续",
    "operator",
    "ｈｅｌｐ",
    "㏩",
    "ﬁ",
    "SN-261120-0001-8",
    "SN 261120 0001 3",
    "4821",
    "修改地址",
    "改电话",
    "change ",
    "e\u0301",
    "\u1100\u1161",
    "ß",
    "İ",
    "K",
    "ſ",
    "١٢",
    "①",
    "😀",
    "_",
    "a",
    "Z",
]
TEXT = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
    st.text(max_size=80),
    st.text(alphabet=st.sampled_from("".join(PIECES)), max_size=80),
)
EXAMPLES = settings(max_examples=600, deadline=None)


def _spans(pattern: re.Pattern[str], s: str) -> list[tuple[tuple[int, int], tuple[str | None, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(s)]


@EXAMPLES
@given(s=TEXT)
def test_text_helpers_match_their_references(s: str) -> None:
    assert text.fold(s) == ref_fold(s)
    assert text.fold(s) == ref_fold(s)  # again: the memo answers this time
    assert text.squash(s) == ref_squash(s)
    assert text.meaningful_count(s) == ref_meaningful_count(s)
    assert text.cjk_count(s) == ref_cjk_count(s)


@EXAMPLES
@given(s=TEXT)
def test_regexes_match_their_references(s: str) -> None:
    folded = ref_fold(s)
    for fast, slow in [
        (extract.ADDRESS_RE, REF_ADDRESS_RE),
        (extract.COMPANY_RE, REF_COMPANY_RE),
        (extract.MOBILE_RE, REF_MOBILE_RE),
        (extract.LANDLINE_RE, REF_LANDLINE_RE),
        (extract.ENTERPRISE_RE, REF_ENTERPRISE_RE),
    ]:
        assert _spans(fast, folded) == _spans(slow, folded), slow.pattern
    assert extract.PHONE_LABEL_RE.sub("", s) == REF_PHONE_LABEL_RE.sub("", s)
    assert (extract._COMPANY_SUFFIX_RE.search(folded) is None) <= (REF_COMPANY_RE.search(folded) is None)


@EXAMPLES
@given(s=TEXT, markers=st.sampled_from([extract._LOCATIVE, extract._COMPANY_CUT]))
def test_cut_after_matches_its_reference(s: str, markers: tuple[str, ...]) -> None:
    assert extract._cut_after(s, markers) == ref_cut_after(s, markers)


@EXAMPLES
@given(s=TEXT, prefix=st.sampled_from([None, "SN"]))
def test_parse_command_matches_its_reference(s: str, prefix: str | None) -> None:
    assert commands.parse_command(s, prefix) == ref_parse_command(s, prefix)


def test_long_messages_still_reach_every_rule() -> None:
    """The shortcuts for long messages (no NFKC for the exact-command check, the company-suffix
    scan) must not hide what is there: a long report still files its company and address."""
    long = "我们公司是睢宁县新科机械有限公司，厂房在人民路88号。" + "这里的噪音问题已经持续很久了。" * 60
    assert commands.parse_command(long) is None
    assert extract.find_company(long) == "睢宁县新科机械有限公司"
    assert extract.find_locations(long) == ["人民路88号"]
    assert commands.parse_command("h e l p" + " !" * 500) == commands.Parsed(commands.Command.HELP)


FIELD_VALUES = {
    "mode": st.sampled_from(list(Mode)),
    "channel": st.sampled_from(["", "wechat", "sms", "email"]),
    "language": st.sampled_from([None, "zh-CN", "en"]),
    "comment_for": st.sampled_from([None, ("SN-261120-0001-8", 1), ("SN-261120-0001-8", 2)]),
    "tries": st.integers(0, 3),
    "sms_opted_out": st.booleans(),
    "draft_started": st.sampled_from([None, 0.0, -0.0, 1.5]),
    "asking": st.sampled_from([None, "phone", "location"]),
}
CHANGES = st.fixed_dictionaries({}, optional=FIELD_VALUES)


@EXAMPLES
@given(before=CHANGES, changes=CHANGES)
def test_evolve_is_replace(before: dict[str, Any], changes: dict[str, Any]) -> None:
    state = replace(ConversationState(), **before)
    fast, slow = state.evolve(**changes), replace(state, **changes)
    assert fast == slow
    assert fast.to_json() == slow.to_json()
    for f in fields(ConversationState):
        assert type(getattr(fast, f.name)) is type(getattr(slow, f.name)), f.name
    if all(type(v) is not float and getattr(state, k) == v for k, v in changes.items()):
        assert fast is state or changes.get("comment_for") is not None


def test_evolve_keeps_what_replace_would_change() -> None:
    state = ConversationState(draft_started=0.0, mode=Mode.COLLECTING)
    assert state.evolve(draft_started=-0.0).to_json() != state.to_json()  # 0.0 == -0.0, but not alike
    assert state.evolve(mode=Mode.COLLECTING) is state
    try:
        state.evolve(no_such_field=1)
    except TypeError:
        pass
    else:
        raise AssertionError("an unknown field must fail as dataclasses.replace does")
