"""Commands a citizen can give at any point, in Chinese or English, half- or full-width.

Recognition is deliberately narrow: a command is the whole message or its start, so a report
that merely contains the word 查询 ("查询一下社保怎么交") stays a report.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from conversation.text import fold, squash
from store.ticketid import find_ticket_ids


class Command(enum.StrEnum):
    HELP = "help"
    CANCEL = "cancel"
    HUMAN = "human"
    RESUME = "resume"
    NEW_REPORT = "new_report"
    STATUS = "status"
    CORRECT = "correct"


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command
    rest: str = ""
    slot: str = ""


_EXACT = {
    Command.HELP: {"帮助", "help", "使用帮助", "怎么用", "菜单", "menu", "帮忙"},
    Command.CANCEL: {"取消", "cancel", "撤销", "不报了", "取消反映", "取消提交", "stop"},
    Command.HUMAN: {"人工", "转人工", "人工客服", "人工服务", "客服", "找人工", "human", "agent", "operator"},
    Command.RESUME: {"继续", "continue", "返回", "resume"},
}
_NEW_REPORT = (
    "我要反映",
    "新问题",
    "我要投诉",
    "我要举报",
    "我要咨询",
    "新的问题",
    "再反映一个",
    "newreport",
    "new",
)
_STATUS = (
    "查询进度",
    "查进度",
    "进度查询",
    "查询工单",
    "我的工单",
    "查询",
    "进度",
    "mytickets",
    "status",
    "query",
    "track",
)
_STATUS_FILLERS = {"", "一下", "工单", "进度", "我的", "一下进度", "一下工单"}
SLOT_WORDS = {
    "地址": "location",
    "位置": "location",
    "地点": "location",
    "address": "location",
    "location": "location",
    "电话": "phone",
    "手机": "phone",
    "号码": "phone",
    "联系电话": "phone",
    "手机号": "phone",
    "phone": "phone",
    "描述": "description",
    "内容": "description",
    "问题": "description",
    "description": "description",
    "姓名": "name",
    "名字": "name",
    "name": "name",
    "类别": "category",
    "分类": "category",
    "类型": "category",
    "category": "category",
    "公司": "company",
    "企业名称": "company",
    "公司名称": "company",
    "company": "company",
    "信用代码": "credit_code",
    "统一社会信用代码": "credit_code",
    "creditcode": "credit_code",
}
_CORRECT_RE = re.compile(
    r"^(?:修改|更改|更正|改一下|改|change|update|correct)\s*(?:my\s+|the\s+)?("
    + "|".join(sorted((re.escape(w) for w in SLOT_WORDS if w != "creditcode"), key=len, reverse=True))
    + r"|credit\s*code)\s*(?:为|成|是|to|:|：)?\s*(.*)$",
    re.I | re.S,
)


def _keyword_re(keyword: str) -> re.Pattern[str]:
    """``keyword`` at the start, spaces allowed between its characters, any case."""
    pattern = r"\s*".join(re.escape(ch) for ch in keyword)
    return re.compile(rf"{pattern}\b" if keyword.isascii() else pattern, re.I)


# Compiled once: building and escaping each pattern per message was most of a short turn's cost.
_KEYWORD_RES = {keyword: _keyword_re(keyword) for keyword in (*_STATUS, *_NEW_REPORT)}


# Ideographs of the basic CJK block survive squash() one for one (NFKC leaves them alone, they
# compose with nothing and have no case), so a message with more of them than the longest exact
# command has cannot squash to one. That spares long messages the NFKC pass.
_LONGEST_EXACT = max(len(word) for words in _EXACT.values() for word in words)
_MORE_IDEOGRAPHS = re.compile(rf"(?:[^\u4e00-\u9fff]*+[\u4e00-\u9fff]){{{_LONGEST_EXACT + 1}}}")


def _could_be_exact(folded: str) -> bool:
    return _MORE_IDEOGRAPHS.match(folded) is None


def _after_keyword(folded: str, keyword: str) -> str | None:
    """The text after ``keyword`` when the (folded, stripped) message starts with it."""
    m = _KEYWORD_RES[keyword].match(folded)
    return None if m is None else folded[m.end() :].strip(" :,.，。：")


def parse_command(text: str, prefix: str | None = None) -> Parsed | None:
    folded = fold(text).strip()
    key = squash(folded) if _could_be_exact(folded) else ""
    if folded in {"?", "？"} or folded.rstrip("?") == "":
        return Parsed(Command.HELP) if folded else None
    for command, words in _EXACT.items():
        if key in words:
            return Parsed(command)
    m = _CORRECT_RE.match(folded)
    if m:
        word = re.sub(r"\s+", "", m.group(1)).lower()
        return Parsed(Command.CORRECT, m.group(2).strip(), SLOT_WORDS.get(word, "credit_code"))
    for keyword in _STATUS:
        rest = _after_keyword(folded, keyword)
        if rest is not None and (
            squash(rest) in _STATUS_FILLERS or find_ticket_ids(rest, prefix) or squash(rest).isdigit()
        ):
            return Parsed(Command.STATUS, rest)
    if find_ticket_ids(folded, prefix) and _only_id_and_code(folded):
        return Parsed(Command.STATUS, folded)
    for keyword in _NEW_REPORT:
        rest = _after_keyword(folded, keyword)
        if rest is not None and (keyword != "new" or squash(rest) in {"", "report", "problem"}):
            return Parsed(Command.NEW_REPORT, "" if keyword == "new" else rest)
    return None


def _only_id_and_code(folded: str) -> bool:
    """A message that is just an id (and maybe a query code) is a status query."""
    leftover = re.sub(r"[A-Za-z]{1,6}", "", folded)
    leftover = re.sub(r"[\d\s\-_./]+", "", leftover)
    return squash(leftover) in {"", "查询码", "querycode", "code"}
