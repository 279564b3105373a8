"""Ticket ids and query codes (DESIGN.md "Ticket ids"): pure functions, no I/O.

Display form ``<PREFIX>-<YYMMDD>-<SEQ>-<C>``: a per-tenant prefix of letters, the local day the
ticket was filed, the daily sequence (at least 4 digits, from an atomic counter in the store) and
a Luhn check digit over all the digits of date and sequence. The check digit exists so that a
citizen who mistypes one digit in a status query is told "wrong id" instead of being shown
someone else's case: Luhn catches every single-digit substitution and most adjacent swaps.

Parsing is tolerant of what phones and Chinese input methods produce: any case, full-width
characters (NFKC folds ``ＳＮ２６１１２５`` to ``SN261125``), and no or other separators
(space, ``-``, ``_``, ``.``, dashes of every width). It is strict about everything else: a
sequence with extra leading zeros or an impossible date is a format error, not a near match.

The Lua copy of :func:`luhn_check_digit` lives in ``store/scripts/apply_turn.lua``; a test checks
both agree.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Literal

PREFIX_RE = re.compile(r"[A-Z]{1,6}")
# Separators people type between the groups. NFKC already maps full-width forms to these.
SEPARATORS = " -_.\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\u30fb\u00b7/\t"
_SEP_CLASS = "[" + re.escape(SEPARATORS) + "]"
# ASCII only: Python's \d also matches Arabic-Indic and other digits NFKC leaves alone.
_SHAPE_RE = re.compile(r"([A-Z]{1,6})(\d{6})(\d{4,})(\d)", re.ASCII)
# An id-shaped token inside free text: a letter prefix, then digit groups split by separators.
_TOKEN_RE = re.compile(
    rf"(?<![A-Z0-9])([A-Z]{{1,6}}){_SEP_CLASS}{{0,2}}(\d+(?:{_SEP_CLASS}{{1,2}}\d+)*)(?![0-9])", re.ASCII
)

Reason = Literal["format", "checksum"]


class TicketIdError(ValueError):
    """Text that is not a valid ticket id. ``reason`` is ``"checksum"`` when it has the shape of
    an id but the check digit fails (a typo: tell the citizen), ``"format"`` otherwise."""

    def __init__(self, reason: Reason, text: str, detail: str = "") -> None:
        super().__init__(f"not a valid ticket id ({reason}): {text!r}" + (f": {detail}" if detail else ""))
        self.reason: Reason = reason
        self.text = text


def luhn_check_digit(digits: str) -> int:
    """The Luhn digit to append to ``digits`` (doubling starts at the rightmost payload digit)."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"Luhn needs ASCII digits, got {digits!r}")
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def _check_prefix(prefix: str) -> str:
    canonical = unicodedata.normalize("NFKC", prefix).upper()
    if not PREFIX_RE.fullmatch(canonical):
        raise ValueError(f"ticket prefix must be 1-6 letters A-Z, got {prefix!r}")
    return canonical


def format_ticket_id(prefix: str, day: dt.date, seq: int) -> str:
    """The display form, e.g. ``format_ticket_id("SN", date(2026, 11, 25), 42)``."""
    if seq < 0:
        raise ValueError(f"sequence must not be negative, got {seq}")
    if not 2000 <= day.year <= 2099:
        raise ValueError(f"ticket ids carry a two-digit year in 2000-2099, got {day}")
    date_part = day.strftime("%y%m%d")
    seq_part = f"{seq:04d}"
    check = luhn_check_digit(date_part + seq_part)
    return f"{_check_prefix(prefix)}-{date_part}-{seq_part}-{check}"


@dataclass(frozen=True, slots=True)
class TicketIdParts:
    prefix: str
    day: dt.date
    seq: int
    check: int


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).upper().strip()


def split_ticket_id(text: str, prefix: str | None = None) -> TicketIdParts:
    """Parse ``text`` into its parts; see :func:`parse_ticket_id` for what is accepted."""
    folded = _fold(text)
    compact = "".join(ch for ch in folded if ch not in SEPARATORS)
    if prefix is not None:
        wanted = _check_prefix(prefix)
        if compact.isascii() and compact.isdigit():
            compact = wanted + compact  # "261125-0042-7" typed without the prefix
    m = _SHAPE_RE.fullmatch(compact)
    if m is None:
        raise TicketIdError("format", text)
    pfx, date_part, seq_part, check = m.groups()
    if prefix is not None and pfx != _check_prefix(prefix):
        raise TicketIdError("format", text, f"prefix {pfx} is not {_check_prefix(prefix)}")
    if luhn_check_digit(date_part + seq_part) != int(check):
        raise TicketIdError("checksum", text)
    if len(seq_part) > 4 and seq_part.startswith("0"):
        # Luhn ignores leading zeros, so "00042" would pass the check: refuse non-canonical forms.
        raise TicketIdError("format", text, "sequence has extra leading zeros")
    try:
        # Always this century: strptime's %y would put 69-99 in the 1900s.
        day = dt.date(2000 + int(date_part[:2]), int(date_part[2:4]), int(date_part[4:]))
    except ValueError:
        raise TicketIdError("format", text, "no such date") from None
    return TicketIdParts(prefix=pfx, day=day, seq=int(seq_part), check=int(check))


def parse_ticket_id(text: str, prefix: str | None = None) -> str:
    """The canonical display form of a typed ticket id, or :class:`TicketIdError`.

    With ``prefix`` given, the id must carry that prefix (or none at all, which is then assumed).
    """
    parts = split_ticket_id(text, prefix)
    return format_ticket_id(parts.prefix, parts.day, parts.seq)


def _parse_token(letters: str, digit_run: str, token: str) -> str | TicketIdError | None:
    """Read one token as exactly one id. Digit groups are joined up to the one-digit check
    group when there is one ("SN-261125-0042-7"), else up to the shortest id shape (11+ digits,
    "SN26112500427"); what follows is something else, typically the query code ("… 4821").
    Only that one reading counts: trying others after a failed check digit would turn a typo
    into a 1-in-10 chance of matching someone else's id."""
    groups = re.split(f"{_SEP_CLASS}+", digit_run)
    ends = [k for k in range(len(groups)) if len("".join(groups[: k + 1])) >= 11]
    if not ends:
        return None
    end = next((k for k in ends if k > 0 and len(groups[k]) == 1), ends[0])
    try:
        return parse_ticket_id(letters + "".join(groups[: end + 1]))
    except TicketIdError as exc:
        return TicketIdError(exc.reason, token)


def find_ticket_ids(text: str, prefix: str | None = None) -> list[str | TicketIdError]:
    """Every id-shaped token in free text, in order: the canonical id when valid, else the
    :class:`TicketIdError` saying why, so the caller can tell "mistyped id" from "no id".

    A token is a 1-6 letter prefix (exactly ``prefix`` when given) followed by at least 11 digits
    in groups. Bare digit runs are never taken as ids: an 11-digit mobile number has that shape.
    """
    return list(_find(text, prefix))


@functools.lru_cache(maxsize=256)
def _find(text: str, prefix: str | None) -> tuple[str | TicketIdError, ...]:
    # Memoised: one turn asks about the same text several times (intake, command parsing, the
    # status dialogue, the mail parser), and NFKC over a long mail is the costly part.
    wanted = _check_prefix(prefix) if prefix is not None else None
    found: list[str | TicketIdError] = []
    for m in _TOKEN_RE.finditer(_fold(text).replace("\n", " ")):
        if wanted is not None and m.group(1) != wanted:
            continue
        result = _parse_token(m.group(1), m.group(2), m.group(0))
        if result is not None:
            found.append(result)
    return tuple(found)


def new_query_code(rng: random.Random | None = None, digits: int = 4) -> str:
    """A 4-6 digit query code (查询码), leading zeros allowed. Drawn with ``secrets`` unless a
    ``random.Random`` is given (tests pass a seeded one)."""
    if not 4 <= digits <= 6:
        raise ValueError(f"query codes have 4-6 digits, got {digits}")
    value = rng.randrange(10**digits) if rng is not None else secrets.randbelow(10**digits)
    return f"{value:0{digits}d}"
