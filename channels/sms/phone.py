"""Phone numbers to E.164, the one form Sulai keeps (``tel:+8613812345678``).

Providers differ: Twilio sends E.164, Aliyun sends bare 11-digit Chinese numbers (or with
``86`` / ``0086``), citizens type anything. ``phonenumbers`` does the parsing; Chinese numbers
without a prefix become +86 because the default region is CN.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers


class PhoneError(ValueError):
    """Not a phone number we can reach."""


# Every inbound text parses its From and To; phonenumbers' parse is a few hundred µs of regexes,
# and a gateway sees the same numbers again and again (ours always). Failures are not cached.
@lru_cache(maxsize=65_536)
def to_e164(raw: str, default_region: str = "CN") -> str:
    """Normalise ``raw`` to E.164 or raise :class:`PhoneError`."""
    text = raw.strip()
    if text.startswith("tel:"):
        text = text[4:]
    digits = "".join(ch for ch in text if ch.isdigit())
    # "8613812345678": a country code without "+" that phonenumbers would read as national.
    if not text.startswith(("+", "00")) and len(digits) == 13 and digits.startswith("861"):
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise PhoneError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def national_cn(e164: str) -> str:
    """The bare national form Chinese providers accept for +86 numbers; others stay E.164."""
    return e164[3:] if e164.startswith("+86") else e164
