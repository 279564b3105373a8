"""Text helpers shared by extractors and commands: folding and measuring what people type.

``fold`` applies NFKC (full-width digits, letters and punctuation become their ASCII forms, as
Chinese input methods produce them) and unifies the punctuation that matters for splitting.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# Full-width digits, letters and the few signs that matter in numbers and labels, mapped one
# character to one character, so spans found in the folded text slice the original text.
_WIDTH = {0xFF10 + i: 0x30 + i for i in range(10)}
_WIDTH.update({0xFF21 + i: 0x41 + i for i in range(26)})
_WIDTH.update({0xFF41 + i: 0x61 + i for i in range(26)})
_WIDTH.update(
    {0x3000: 0x20, 0xFF0B: 0x2B, 0xFF0D: 0x2D, 0xFF08: 0x28, 0xFF09: 0x29, 0xFF1A: 0x3A, 0x2014: 0x2D}
)


def fold(text: str) -> str:
    """Width-fold without changing the length (unlike NFKC)."""
    return text.translate(_WIDTH).replace("\r", "\n")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def cjk_count(text: str) -> int:
    return len(_CJK.findall(text))


def meaningful_count(text: str) -> int:
    """Letters, digits and ideographs; emoji, symbols, punctuation and spaces do not count."""
    return sum(1 for ch in text if unicodedata.category(ch)[0] in "LN")


def latin_words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{2,}", text))


def squash(text: str) -> str:
    """Lower-case, no spaces or punctuation: for matching short answers and commands."""
    folded = nfkc(text).lower()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def tidy(text: str) -> str:
    """Collapse runs of spaces and trim stray punctuation at both ends."""
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(" \t\n,.;:，。；：、")


def detect_language(text: str) -> str | None:
    """zh-CN when the text has ideographs, en when it is several Latin words and none, else None."""
    if cjk_count(text) >= 2:
        return "zh-CN"
    if cjk_count(text) == 0 and latin_words(text) >= 2:
        return "en"
    return None
