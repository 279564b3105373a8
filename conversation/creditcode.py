"""Unified social credit code (统一社会信用代码) check, GB 32100-2015.

18 characters from a 31-symbol alphabet (digits and capitals without I, O, S, V, Z). The 18th is a
check character: weights 3^i mod 31 over the first 17, check = (31 - sum mod 31) mod 31.
"""

from __future__ import annotations

import unicodedata

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def normalise_credit_code(text: str) -> str:
    """Full-width and lower-case forms folded; spaces and dashes dropped."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in folded if ch not in " -\t")


def credit_check_character(first17: str) -> str:
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def is_valid_credit_code(text: str) -> bool:
    code = normalise_credit_code(text)
    if len(code) != 18 or any(ch not in _VALUE for ch in code):
        return False
    # The first character is the registration authority (1-9, A, N, Y); the second the kind.
    if code[0] not in "123456789ANY":
        return False
    return credit_check_character(code[:17]) == code[17]
