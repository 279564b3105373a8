"""How many SMS segments a text costs (PROTOCOLS.md B.7).

GSM-7: 160 characters in one segment, 153 per part when concatenated; the extension characters
``^{}\\[~]|€`` (and form feed) take two septets. Any other character makes the whole message
UCS-2: 70 single, 67 per part, counted in UTF-16 code units (an emoji counts 2).
A part never splits an escape sequence or a surrogate pair, so counting is done per unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7 = "GSM-7"
UCS2 = "UCS-2"


def _units(text: str) -> tuple[str, list[int]]:
    """The encoding and the size of each indivisible unit (septets or UTF-16 code units)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        return GSM7, [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str) -> tuple[str, int]:
    """``(encoding, segments)`` of ``text``; the empty text is one segment, as providers bill it."""
    encoding, units = _units(text)
    single, part = (160, 153) if encoding == GSM7 else (70, 67)
    if sum(units) <= single:
        return encoding, 1
    segments, used = 1, 0
    for size in units:
        if used + size > part:
            segments += 1
            used = 0
        used += size
    return encoding, segments


def fit_params(
    render: Callable[[Mapping[str, str]], str],
    params: Mapping[str, str],
    free_text: Iterable[str],
    max_segments: int = 2,
) -> dict[str, str]:
    """Shorten the free-text parameters (a unit's answer, a reason …), longest first and ending
    in "…", until ``render(params)`` fits in ``max_segments``. Structured parameters (ticket id,
    query code) are never cut: a truncated id is worse than a longer message."""
    values = dict(params)
    names = [n for n in free_text if n in values]
    while True:
        encoding, segments = count_segments(render(values))
        if segments <= max_segments or not names:
            return values
        longest = max(names, key=lambda n: len(values[n]))
        text = values[longest].removesuffix("…")
        if len(text) <= 1:
            return values
        single, part = (160, 153) if encoding == GSM7 else (70, 67)
        over = max(1, len(render(values)) - (part * max_segments if max_segments > 1 else single))
        values[longest] = text[: max(1, len(text) - over - 1)] + "…"
