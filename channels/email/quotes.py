"""Stripping quoted history from replies, Chinese and English forms (PROTOCOLS.md C.7).

Mail clients quote the whole previous mail under a header line; a ticket wants only what the
citizen wrote now. We cut at the first history marker and drop ``>`` lines. The caller always
keeps the full original next to the stripped text, because a heuristic can cut too much.

Markers (verified against Gmail-zh, Outlook, QQ mail, 163, Foxmail, Apple Mail):
- ``在 2026年11月25日周三 14:00，张三 <a@b.cn> 写道：`` (Gmail-zh, 163, Apple Mail zh), also
  wrapped over two lines;
- ``-----原始邮件-----`` and QQ mail's ``------------------ 原始邮件 ------------------`` (its
  HTML uses ``&nbsp;`` between the words), ``-----Original Message-----``;
- an Outlook/Foxmail header block: ``发件人：`` or ``From:`` followed by ``发送时间：``/``时间：``/
  ``收件人：``/``主题：`` or ``Sent:``/``Date:``/``To:``/``Subject:`` lines, optionally after a
  ``____`` rule;
- ``On Wed, Nov 25, 2026 at 2:00 PM 张三 <a@b.cn> wrote:`` (also wrapped).

Forwarded mail is not history: its content is what the citizen wants us to read, so a forward
marker stops nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NBSP = "\u00a0\u3000\u2007\u202f"


def _norm(line: str) -> str:
    for ch in _NBSP:
        line = line.replace(ch, " ")
    return line.replace("&nbsp;", " ").strip()


_ZAI_WROTE = re.compile(r"^在.+写道\s*[:：]\s*$")
_WROTE_ONLY = re.compile(r"^.{0,80}写道\s*[:：]\s*$")
_ON_WROTE = re.compile(r"^On .+ wrote:\s*$")
_WROTE_EN = re.compile(r"^.{0,120}\bwrote:\s*$")
_ORIGINAL = re.compile(r"^-{2,}\s*(原始邮件|Original Message|Original)\s*-{2,}$", re.IGNORECASE)
_FORWARD = re.compile(
    r"^-{2,}\s*(Forwarded message|转发邮件信息|转发的邮件|Forwarded Message|原邮件转发)\s*-{2,}$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^_{8,}$")
_HEADER_START = re.compile(r"^(发件人|From)\s*[:：]", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^(发送时间|时间|日期|收件人|抄送|主题|Sent|Date|To|Cc|Subject)\s*[:：]", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Stripped:
    text: str  # what the sender wrote now
    quoted: bool  # history was found and removed
    forwarded: bool  # the mail forwards another one (kept whole)


def _is_header_block(lines: list[str], i: int) -> bool:
    if not _HEADER_START.match(lines[i]):
        return False
    following = [ln for ln in lines[i + 1 : i + 6] if ln]
    return sum(1 for ln in following[:4] if _HEADER_NEXT.match(ln)) >= 2


def _cut_index(lines: list[str]) -> int | None:
    """The index of the first line of quoted history, or None."""
    for i, line in enumerate(lines):
        prev = lines[i - 1] if i else ""
        if _ORIGINAL.match(line) or _ZAI_WROTE.match(line) or _ON_WROTE.match(line):
            return i
        if (_WROTE_ONLY.match(line) and prev.startswith("在")) or (
            _WROTE_EN.match(line) and prev.startswith("On ")
        ):
            return i - 1  # the header line wrapped in two
        if _RULE.match(line) and i + 1 < len(lines) and _is_header_block(lines, i + 1):
            return i
        if _is_header_block(lines, i):
            return i
    return None


def strip_quoted(text: str) -> Stripped:
    """The reply without its quoted history. Falls back to the whole text when nothing would remain."""
    raw_lines = text.replace("\r\n", "\n").split("\n")
    lines = [_norm(ln) for ln in raw_lines]
    if any(_FORWARD.match(ln) for ln in lines):
        return Stripped(text=text.strip(), quoted=False, forwarded=True)
    cut = _cut_index(lines)
    kept = raw_lines[:cut] if cut is not None else raw_lines
    quoted = cut is not None
    out: list[str] = []
    for ln in kept:
        if ln.lstrip().startswith(">"):
            quoted = True
            continue
        out.append(ln.rstrip())
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
    if not result:
        return Stripped(text=text.strip(), quoted=False, forwarded=False)
    return Stripped(text=result, quoted=quoted, forwarded=False)
