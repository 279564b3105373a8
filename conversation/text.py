"""Text helpers shared by extractors and commands: folding and measuring what people type.

``fold`` applies NFKC (full-width digits, letters and punctuation become their ASCII forms, as
Chinese input methods produce them) and unifies the punctuation that matters for splitting.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# Letters and digits: exactly the characters of Unicode categories L* and N* (re's \w without
# "_" is str.isalnum, which Python defines by those categories; a test checks every code point).
# One regex pass replaces a Python-level unicodedata.category() call per character.
_ALNUM = re.compile(r"[^\W_]+")


# Full-width digits, letters and the few signs that matter in numbers and labels, mapped one
# character to one character, so spans found in the folded text slice the original text.
_WIDTH = {0xFF10 + i: 0x30 + i for i in range(10)}
_WIDTH.update({0xFF21 + i: 0x41 + i for i in range(26)})
_WIDTH.update({0xFF41 + i: 0x61 + i for i in range(26)})
_WIDTH.update(
    {0x3000: 0x20, 0xFF0B: 0x2B, 0xFF0D: 0x2D, 0xFF08: 0x28, 0xFF09: 0x29, 0xFF1A: 0x3A, 0x2014: 0x2D}
)


_NEEDS_FOLD = re.compile("[" + "".join(re.escape(chr(c)) for c in _WIDTH) + "\r]")


def fold(text: str) -> str:
    """Width-fold without changing the length (unlike NFKC)."""
    # Most texts have nothing to fold, and extractors fold the same message many times per turn:
    # a regex scan answers the first case, a small memo the second (str.translate with a dict
    # costs ~15 ns per character, which made folding the main cost of a long message).
    return text if _NEEDS_FOLD.search(text) is None else _fold(text)


@functools.lru_cache(maxsize=64)
def _fold(text: str) -> str:
    return text.translate(_WIDTH).replace("\r", "\n")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def cjk_count(text: str) -> int:
    return sum(map(len, _CJK_RUN.findall(text)))  # runs, not one list item per character


def meaningful_count(text: str) -> int:
    """Letters, digits and ideographs; emoji, symbols, punctuation and spaces do not count."""
    return sum(len(run) for run in _ALNUM.findall(text))


def latin_words(text: str) -> int:
    return len(_LATIN_WORD.findall(text))


def squash(text: str) -> str:
    """Lower-case, no spaces or punctuation: for matching short answers and commands."""
    return "".join(_ALNUM.findall(nfkc(text).lower()))


def tidy(text: str) -> str:
    """Collapse runs of spaces and trim stray punctuation at both ends."""
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(" \t\n,.;:，。；：、")


def detect_language(text: str) -> str | None:
    """zh-CN when the text has ideographs, en when it is several Latin words and none, else None."""
    ideographs = cjk_count(text)
    if ideographs >= 2:
        return "zh-CN"
    if ideographs == 0 and latin_words(text) >= 2:
        return "en"
    return None
