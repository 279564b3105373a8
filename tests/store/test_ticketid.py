"""Ticket ids: generation, tolerant parsing, and typo rejection (property-based)."""

from __future__ import annotations

import datetime as dt
import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.ticketid import (
    TicketIdError,
    find_ticket_ids,
    format_ticket_id,
    luhn_check_digit,
    new_query_code,
    parse_ticket_id,
    split_ticket_id,
)

prefixes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6)
days = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))
seqs = st.integers(min_value=0, max_value=2_000_000)
separators = st.sampled_from(["", "-", " ", "_", ".", "—", "－", "  ", "\u3000"])


def to_fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def luhn_valid(number: str) -> bool:
    """Independent Luhn validation (the textbook right-to-left check over the whole number)."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def test_known_luhn_values() -> None:
    # Textbook examples: 7992739871 -> 3 (Wikipedia), 4111 1111 1111 111 -> 1 (test Visa).
    assert luhn_check_digit("7992739871") == 3
    assert luhn_check_digit("411111111111111") == 1


def test_display_form() -> None:
    ticket_id = format_ticket_id("SN", dt.date(2026, 11, 25), 42)
    assert ticket_id.startswith("SN-261125-0042-")
    assert luhn_valid("2611250042" + ticket_id[-1])
    assert format_ticket_id("sn", dt.date(2026, 1, 2), 12345).startswith("SN-260102-12345-")


@given(prefixes, days, seqs)
def test_generated_ids_are_luhn_valid_and_parse_back(prefix: str, day: dt.date, seq: int) -> None:
    ticket_id = format_ticket_id(prefix, day, seq)
    digits = "".join(ch for ch in ticket_id if ch.isdigit())
    assert luhn_valid(digits)
    assert parse_ticket_id(ticket_id) == ticket_id
    parts = split_ticket_id(ticket_id)
    assert (parts.prefix, parts.day, parts.seq) == (prefix, day, seq)


@given(prefixes, days, seqs, separators, st.booleans(), st.booleans())
def test_mangled_ids_parse_back(
    prefix: str, day: dt.date, seq: int, sep: str, fullwidth: bool, lower: bool
) -> None:
    ticket_id = format_ticket_id(prefix, day, seq)
    typed = sep.join(ticket_id.split("-"))
    if lower:
        typed = typed.lower()
    if fullwidth:
        typed = to_fullwidth(typed)
    assert parse_ticket_id(typed) == ticket_id
    assert parse_ticket_id(typed, prefix=prefix.lower()) == ticket_id
    assert find_ticket_ids(f"查询{typed} 谢谢") == [ticket_id]


@given(prefixes, days, seqs, st.data())
def test_every_single_digit_substitution_is_rejected(
    prefix: str, day: dt.date, seq: int, data: st.DataObject
) -> None:
    ticket_id = format_ticket_id(prefix, day, seq)
    positions = [i for i, ch in enumerate(ticket_id) if ch.isdigit()]
    pos = data.draw(st.sampled_from(positions))
    new_digit = data.draw(st.sampled_from([d for d in "0123456789" if d != ticket_id[pos]]))
    typo = ticket_id[:pos] + new_digit + ticket_id[pos + 1 :]
    with pytest.raises(TicketIdError) as err:
        parse_ticket_id(typo)
    assert err.value.reason == "checksum"
    (found,) = find_ticket_ids(f"查询 {typo} 4821")
    assert isinstance(found, TicketIdError) and found.reason == "checksum"


def test_every_substitution_of_one_id_exhaustively() -> None:
    ticket_id = format_ticket_id("SN", dt.date(2026, 11, 25), 42)
    for pos, ch in enumerate(ticket_id):
        if not ch.isdigit():
            continue
        for d in "0123456789":
            if d != ch:
                with pytest.raises(TicketIdError):
                    parse_ticket_id(ticket_id[:pos] + d + ticket_id[pos + 1 :])


@pytest.mark.parametrize(
    "text",
    ["", "SN", "SN-2611-0042-1", "13812345678", "SN-261125-042-1", "SN1234567890123456789X", "路灯坏了"],
)
def test_format_errors(text: str) -> None:
    with pytest.raises(TicketIdError) as err:
        parse_ticket_id(text)
    assert err.value.reason == "format"


def test_non_canonical_sequence_and_bad_date_are_format_errors() -> None:
    # An extra zero in the sequence, with a check digit that fits the padded digits.
    padded = f"SN-261125-00042-{luhn_check_digit('26112500042')}"
    with pytest.raises(TicketIdError) as err:
        parse_ticket_id(padded)
    assert err.value.reason == "format"
    # Month 13 with a correct Luhn digit.
    impossible = f"SN-261325-0042-{luhn_check_digit('2613250042')}"
    with pytest.raises(TicketIdError) as err:
        parse_ticket_id(impossible)
    assert err.value.reason == "format"


def test_prefix_rules() -> None:
    ticket_id = format_ticket_id("SN", dt.date(2026, 11, 25), 42)
    assert parse_ticket_id(ticket_id[3:], prefix="SN") == ticket_id  # prefix left out
    with pytest.raises(TicketIdError):
        parse_ticket_id(ticket_id[3:])  # no prefix known: not an id
    with pytest.raises(TicketIdError) as err:
        parse_ticket_id("XY" + ticket_id[2:], prefix="SN")
    assert err.value.reason == "format"


def test_find_in_free_text() -> None:
    a = format_ticket_id("SN", dt.date(2026, 11, 25), 42)
    b = format_ticket_id("SN", dt.date(2026, 11, 26), 7)
    typed_a = unicodedata.normalize("NFC", to_fullwidth(a.replace("-", "").lower()))
    text = f"查询 {typed_a} 4821，还有{b}，电话13812345678"
    assert find_ticket_ids(text) == [a, b]
    assert find_ticket_ids("我家门口的路灯坏了，电话 138 1234 5678") == []
    assert find_ticket_ids("status SN-261125-0042-x") == []
    wrong = a[:-1] + str((int(a[-1]) + 1) % 10)
    (err,) = find_ticket_ids(f"进度 {wrong}")
    assert isinstance(err, TicketIdError) and err.reason == "checksum"
    assert find_ticket_ids(f"{a} {b}", prefix="XY") == []


@settings(max_examples=50)
@given(st.integers(min_value=4, max_value=6), st.integers())
def test_query_codes(digits: int, seed: int) -> None:
    code = new_query_code(random.Random(seed), digits)
    assert len(code) == digits and code.isdigit()
    assert len(new_query_code()) == 4


def test_query_code_length_bounds() -> None:
    with pytest.raises(ValueError):
        new_query_code(digits=3)
    with pytest.raises(ValueError):
        new_query_code(digits=7)


def test_digits_of_other_scripts_are_not_an_id_and_never_crash() -> None:
    # NFKC leaves Arabic-Indic digits alone; they must read as "not an id", not raise.
    text = "查询 SN-٢٦١١٢٥-٠٠٤٢-٧"
    assert all(not isinstance(t, str) for t in find_ticket_ids(text))
    with pytest.raises(TicketIdError) as info:
        parse_ticket_id("SN-٢٦١١٢٥-٠٠٤٢-٧")
    assert info.value.reason == "format"
