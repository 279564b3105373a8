"""Consent keywords: STOP / START / HELP and their Chinese equivalents (PROTOCOLS.md B.6, D).

Only a whole message is a keyword ("stop the noise at night" is a request, not an opt-out).
Matching ignores case, surrounding spaces and end punctuation, and folds full-width forms
(``ＳＴＯＰ`` from Chinese input methods) with NFKC. Twilio's ``OptOutType`` wins when present:
Advanced Opt-Out may have matched a localised keyword we do not know.
"""

from __future__ import annotations

import unicodedata

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"

KEYWORDS: dict[str, str] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "退订", "TD", "T"),
        OPT_OUT,
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), OPT_IN),
    **dict.fromkeys(("HELP", "INFO", "帮助"), HELP),
}

OPT_OUT_TYPES = {"STOP": OPT_OUT, "START": OPT_IN, "HELP": HELP}

_EDGE_PUNCTUATION = " \t\r\n.,!?;:'\"。，！？；：、…~"


def normalise_keyword(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip(_EDGE_PUNCTUATION).upper()


def classify(text: str, opt_out_type: str = "") -> str | None:
    """``opt_out``, ``opt_in``, ``help`` or None when the message is not a consent keyword."""
    if opt_out_type:
        event = OPT_OUT_TYPES.get(opt_out_type.strip().upper())
        if event:
            return event
    return KEYWORDS.get(normalise_keyword(text))
