"""Rule-based, deterministic slot extraction and validation (issue 3).

``extract`` finds every slot one message fills on its own (phones, addresses by Chinese address
markers, a category from the keyword table, company, credit code, labelled fields such as
"地址：…"). ``answer_for`` reads a message as the answer to the slot being asked, which is more
lenient (any place description is a location when we asked for one). Nothing here guesses: a value
is returned only when the rule matched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from conversation.creditcode import is_valid_credit_code, normalise_credit_code
from conversation.settings import Category
from conversation.text import cjk_count, fold, meaningful_count, squash, tidy

_SEP = r"[\s\-]?"
# The leading lookaheads (the characters a match can begin with) change no match; they spare the
# regex engine the full attempt at every character of a long message.
MOBILE_RE = re.compile(rf"(?=[+81])(?<!\d)(?:\+?86{_SEP})?(1[3-9]\d(?:{_SEP}\d){{8}})(?!\d)")
LANDLINE_RE = re.compile(r"(?=[(0])(?<!\d)\(?(0\d{2,3})\)?[\s\-]?(\d{3,4}[\s\-]?\d{4})(?!\d)")
DIGITISH_RE = re.compile(r"(?<!\d)\+?\d[\d\s\-]{3,}\d(?!\d)")
PHONE_LABEL_RE = re.compile(
    r"(?=[联手电号ptm])(联系电话|联系方式|手机号码|手机号|电话号码|电话|手机|号码|phone|tel|mobile)\s*[:是为]?\s*$",
    re.I,
)

# Function words never belong to a place name, so a span cannot start in "我家门口的…".
_FUNCTION_WORDS = "的了是有我你他她它们很都也就还又在把被"
_MARK = (
    r"(?:自治区|自治州|街道|社区|小区|花园|新村|公寓|大厦|广场|大道|大街|胡同|号楼|单元|开发区|工业园"
    r"|省|市|县|区|镇|乡|村|路|街|巷|弄|号|栋|幢|座|室|组)"
)
# A marker character that begins another word (路灯, 市场, 号码, 区域 …) is not a marker.
_NOT_AFTER = r"(?!灯|面|边|段|况|过|线|费|由|障|程|径|标|场|民|长|政|容|委|域|别|码|召|称|坊|级|人|子|舞|管)"
_FINE_RE = re.compile(
    r"街道|社区|小区|花园|新村|公寓|大厦|广场|大道|大街|胡同|单元|镇|乡|村|路|街|巷|弄|号|栋|幢|座|室|组"
)


def _char_class(ranges: str, excluded: str) -> str:
    """A regex class of the ``ranges`` ("az09" pairs) minus the ``excluded`` characters."""
    kept = sorted(
        {c for a, b in zip(ranges[::2], ranges[1::2], strict=True) for c in range(ord(a), ord(b) + 1)}
        - {ord(c) for c in excluded}
    )
    runs: list[tuple[int, int]] = []
    for c in kept:
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return (
        "[" + "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in runs) + "]"
    )


# A place-name character: an ideograph, letter or digit that is not a function word.
_NAME = _char_class("\u4e00\u9fffAZaz09", _FUNCTION_WORDS)
# Only characters that begin some marker; the marker alternation is tried only where one stands.
_MARK_START = "(?=[" + "".join(sorted({alt[0] for alt in _MARK[3:-1].split("|")})) + "])"
# Scanned once per message and tried at every character, so it is written for speed: the function
# word exclusion folded into one character class (not a lookahead per character), and the marker
# alternation gated by a one-character test. tests/conversation/test_speedups.py compares it with
# the plain form "(?:(?![function words])[\u4e00-\u9fffA-Za-z0-9]){1,12}?{_MARK}{_NOT_AFTER}" on
# random text.
ADDRESS_RE = re.compile(rf"(?:{_NAME}{{1,12}}?{_MARK_START}{_MARK}{_NOT_AFTER})+")
_LOCATIVE = (
    "反映",
    "投诉",
    "举报",
    "晚上",
    "白天",
    "地址是",
    "地址为",
    "地址",
    "地点",
    "位置",
    "位于",
    "家住",
    "住在",
    "就在",
    "在",
    "于",
    "是",
    ":",
)
_OWN_HOME_RE = re.compile(r"^(我家|我们家|我们|我|家)")
_GENERIC_PLACES = frozenset(
    {
        "马路",
        "道路",
        "街道",
        "小区",
        "社区",
        "城市",
        "超市",
        "市区",
        "城区",
        "郊区",
        "地区",
        "农村",
        "乡村",
        "本市",
        "全市",
        "全县",
        "本县",
        "我市",
        "我县",
        "本区",
        "开发区",
        "工业园",
        "园区",
    }
)

_COMPANY_SUFFIX = "股份有限公司|有限责任公司|有限公司|集团公司|集团|合作社|商行|门市部|工作室|事务所|公司|厂"
# A message without any company suffix has no company: one quick scan instead of the full regex.
_COMPANY_SUFFIX_RE = re.compile(_COMPANY_SUFFIX)
_SUFFIX_START = "(?=[" + "".join(sorted({alt[0] for alt in _COMPANY_SUFFIX.split("|")})) + "])"
COMPANY_RE = re.compile(
    rf"([\u4e00-\u9fffA-Za-z0-9()]{{4,30}}?{_SUFFIX_START}(?:{_COMPANY_SUFFIX}))"
    r"(?=$|[\s,.;!?，。；、:()！？]|的|在|是|位于|有|想|需要|要)"
)
_COMPANY_CUT = ("公司名称", "企业名称", "单位名称", "代表", "我们是", "我司是", "我是", "是", "为", "叫", ":")
CREDIT_TOKEN_RE = re.compile(r"(?<![0-9A-Z])[0-9A-Z]{15,20}(?![0-9A-Z])")
NAME_RE = re.compile(
    r"(?:我叫|姓名\s*[:是为]?|名字\s*[:是为]?|my name is\s+)([\u4e00-\u9fff]{2,4}|[A-Za-z][A-Za-z ]{1,30}[A-Za-z])",
    re.I,
)
# The lookahead, as for the phone regexes: the characters a match can begin with.
ENTERPRISE_RE = re.compile(
    r"(?=[我本代企o])(?:我们公司|我公司|本公司|我司|我们企业|本企业|我们厂|代表.{0,6}(?:公司|企业)|企业诉求|our company)",
    re.I,
)
_LABELS = {
    "location": r"(?:详细地址|地址|位置|地点|address|location)",
    "description": r"(?:问题描述|问题|描述|内容|description)",
    "company": r"(?:企业名称|公司名称|单位名称|company)",
}
_LABEL_RES = {
    slot: re.compile(rf"{label}\s*[:：]\s*([^\n;；,，。]+)", re.I) for slot, label in _LABELS.items()
}
_CREDIT_LABEL_RE = re.compile(r"(统一社会信用代码|社会信用代码|信用代码)\s*[:：是为]?\s*")
_FIELD_WORD_RE = re.compile(r"(地址|位置|地点|姓名|名字|我叫|公司|企业|名称|是)\s*[:：]?")
_GREETINGS = re.compile(r"^(你好|您好|在吗|在不在|哈喽|hello|hi|hey)[!,.~ ]*", re.I)


@dataclass(frozen=True, slots=True)
class Extraction:
    values: dict[str, str] = field(default_factory=dict)
    problems: frozenset[str] = frozenset()  # e.g. {"phone", "credit_code"}: looked like one, invalid


def find_phones(text: str) -> list[tuple[str, tuple[int, int]]]:
    folded = fold(text)
    found = []
    for m in MOBILE_RE.finditer(folded):
        found.append((re.sub(r"\D", "", m.group(1)), m.span()))
    for m in LANDLINE_RE.finditer(folded):
        if not any(a <= m.start() < b for _, (a, b) in found):
            local = re.sub(r"\D", "", m.group(2))
            found.append((f"{m.group(1)}-{local}", m.span()))
    return sorted(found, key=lambda item: item[1])


def phone_to_e164(phone: str) -> str | None:
    """The SMS-capable form of a Chinese mobile number; landlines have none."""
    return f"+86{phone}" if re.fullmatch(r"1[3-9]\d{9}", phone) else None


def _cut_after(span: str, markers: tuple[str, ...]) -> str:
    """``span`` after the last of ``markers`` that leaves at least two characters."""
    if _any_of(markers).search(span) is None:
        return span  # the usual case, in one scan instead of a find per marker
    best = -1
    for marker in markers:
        i = span.rfind(marker)
        if i >= 0 and len(span) - (i + len(marker)) >= 2:
            best = max(best, i + len(marker))
    return span[best:] if best >= 0 else span


@functools.cache
def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in words))


def find_locations(text: str) -> list[str]:
    """Address-like spans, cleaned of leading words such as 在/位于/地址是."""
    return list(_locations(text))


@functools.lru_cache(maxsize=64)
def _locations(text: str) -> tuple[str, ...]:
    # Memoised: a turn looks for places in the same text more than once (slot extraction, the
    # description cut), and on a long mail the address regex is the costly part.
    places: list[str] = []
    for m in ADDRESS_RE.finditer(fold(text)):
        span = _cut_after(m.group(0), _LOCATIVE)
        span = _OWN_HOME_RE.sub("", span)
        # A county or city alone is too vague to send anyone to.
        fine = _FINE_RE.search(span) is not None
        if fine and len(span) >= 3 and cjk_count(span) >= 2 and span not in _GENERIC_PLACES:
            places.append(span)
    return tuple(places)


def find_category(text: str, categories: Sequence[Category]) -> str | None:
    lowered = fold(text).lower()
    best, best_hits = None, 0
    for cat in categories:
        hits = sum(1 for k in cat.keywords if k.lower() in lowered)
        if hits > best_hits:
            best, best_hits = cat.name, hits
    return best


def pick_category(text: str, categories: Sequence[Category]) -> str | None:
    """An answer to the category menu: its number, the name or label, or a keyword."""
    key = squash(text)
    if key.isdigit() and 1 <= int(key) <= len(categories):
        return categories[int(key) - 1].name
    for cat in categories:
        if key and any(key == squash(label) for label in (cat.name, *cat.labels.values())):
            return cat.name
    return find_category(text, categories)


def find_credit_codes(text: str) -> tuple[list[str], bool]:
    """Valid codes found, and whether some credit-code-like token was invalid."""
    valid, bad = [], False
    for m in CREDIT_TOKEN_RE.finditer(fold(text).upper()):
        token = m.group(0)
        if sum(ch.isdigit() for ch in token) < 6:
            continue
        if len(token) == 18 and is_valid_credit_code(token):
            valid.append(normalise_credit_code(token))
        else:
            bad = True
    return valid, bad


def find_company(text: str) -> str | None:
    folded = fold(text)
    if _COMPANY_SUFFIX_RE.search(folded) is None:
        return None
    for m in COMPANY_RE.finditer(folded):
        name = _cut_after(m.group(1), _COMPANY_CUT)
        if meaningful_count(name) >= 4:
            return name
    return None


def labelled(text: str, slot: str) -> str | None:
    label_re = _LABEL_RES.get(slot)
    if label_re is None:
        return None
    m = label_re.search(fold(text))
    return tidy(m.group(1)) if m and meaningful_count(m.group(1)) >= 2 else None


def strip_for_description(text: str) -> str:
    """The message without phone numbers (and their labels), credit codes or greetings."""
    pieces, last = [], 0
    for _, (a, b) in find_phones(text):
        before = PHONE_LABEL_RE.sub("", text[last:a])
        pieces.append(before)
        last = b
    pieces.append(text[last:])
    rest = "".join(pieces)
    rest = _drop_credit_tokens(rest)
    rest = _GREETINGS.sub("", rest.strip())
    return tidy(rest)


def _drop_credit_tokens(text: str) -> str:
    folded = fold(text)
    for m in reversed(list(CREDIT_TOKEN_RE.finditer(folded.upper()))):
        text = text[: m.start()] + text[m.end() :]
    return _CREDIT_LABEL_RE.sub("", text)


def description_in(text: str, min_chars: int, max_chars: int) -> str | None:
    """A description, if the message says something beyond contact and place details."""
    body = strip_for_description(text)
    remainder = body
    for part in [
        *find_locations(body),
        labelled(body, "location"),
        labelled(body, "company"),
        find_company(body),
    ]:
        if part:
            remainder = remainder.replace(part, "")
    remainder = ENTERPRISE_RE.sub("", remainder)
    remainder = _FIELD_WORD_RE.sub("", remainder)
    if meaningful_count(remainder) < min_chars:
        return None
    return body[:max_chars]


def extract(
    text: str, categories: Sequence[Category], min_chars: int = 4, max_chars: int = 2000
) -> Extraction:
    values: dict[str, str] = {}
    problems: set[str] = set()
    phones = find_phones(text)
    if phones:
        values["phone"] = phones[0][0]
    places = find_locations(text)
    loc = labelled(text, "location") or (max(places, key=len) if places else None)
    if loc:
        values["location"] = loc[:200]
    codes, bad_code = find_credit_codes(text)
    if codes:
        values["credit_code"] = codes[0]
    elif bad_code:
        problems.add("credit_code")
    company = labelled(text, "company") or find_company(text)
    if company:
        values["company"] = company[:100]
    name = NAME_RE.search(fold(text))
    if name:
        values["name"] = name.group(1).strip()
    category = find_category(text.replace(loc, "") if loc else text, categories)
    if category:
        values["category"] = category
    desc = labelled(text, "description") or description_in(text, min_chars, max_chars)
    if desc:
        values["description"] = desc[:max_chars]
    return Extraction(values, frozenset(problems))


def wants_enterprise(text: str) -> bool:
    return bool(ENTERPRISE_RE.search(fold(text)))


def looks_like_phone_attempt(text: str) -> bool:
    return bool(DIGITISH_RE.search(fold(text)))
