"""The channel contract's own rules: addresses, text normalisation, the send-error set."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import (
    AddressError,
    Inbound,
    InboundKind,
    SendErrorCode,
    address_channel,
    clean_text,
    mailto_address,
    tel_address,
    wechat_address,
)


def reference_clean_text(text: str) -> str:
    """The obvious, slow definition clean_text must agree with."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch for ch in text if ch in "\t\n" or unicodedata.category(ch) != "Cc")
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n"))


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_clean_text_matches_its_definition(text: str) -> None:
    assert clean_text(text) == reference_clean_text(text)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("路灯\x00坏了", "路灯坏了"),
        ("line1\r\nline2", "line1\nline2"),
        ("e\u0301", "\u00e9"),  # NFC
        ("tab\there", "tab\there"),
        ("c1\x85control", "c1control"),
        ("\ud800lone", "?lone"),
    ],
)
def test_clean_text_examples(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_addresses_and_their_channels() -> None:
    assert address_channel(wechat_address("wx1", "o1")) == "wechat"
    assert address_channel(tel_address("+8613812345678")) == "sms"
    assert mailto_address("Li@Example.COM") == "mailto:Li@example.com"
    assert address_channel("mailto:li@example.com") == "email"
    for bad in ("13812345678", "fax:123", "tel:"):
        with pytest.raises(AddressError):
            address_channel(bad)
    with pytest.raises(AddressError):
        tel_address("13812345678")


def test_inbound_normalises_once_and_refuses_naive_times() -> None:
    inbound = Inbound(
        channel="sms",
        account="+15005550006",
        sender="tel:+8613812345678",
        external_id="SM1",
        kind=InboundKind.TEXT,
        received_at=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        text="路灯\r\n坏了\x00",
    )
    assert inbound.text == "路灯\n坏了"
    with pytest.raises(ValueError, match="timezone-aware"):
        Inbound(
            channel="sms",
            account="x",
            sender="tel:+8613812345678",
            external_id="SM2",
            kind=InboundKind.TEXT,
            received_at=datetime(2026, 11, 25, 8, 0),  # naive: the point of the test
        )


def test_only_temporary_failures_are_retried() -> None:
    assert {c for c in SendErrorCode if c.retryable} == {SendErrorCode.TEMPORARY, SendErrorCode.RATE_LIMITED}
    assert {c for c in SendErrorCode if c.try_other_address} == {
        SendErrorCode.WINDOW_CLOSED,
        SendErrorCode.OPTED_OUT,
        SendErrorCode.UNREACHABLE,
    }
