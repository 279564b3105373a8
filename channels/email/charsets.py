"""Decoding mail text parts as mail in China really arrives (PROTOCOLS.md C.6).

``gb2312`` labels routinely cover GBK-only characters (朱镕基's 镕), which the stdlib turns into
garbage or an exception; gb18030 is a superset of both, so every GB label decodes as gb18030.
Big5 mail from Hong Kong uses HKSCS characters, so big5 decodes as big5hkscs. A part whose label
is wrong or unknown never crashes the parser: the label is tried, then UTF-8, then gb18030, and
at worst the text carries replacement characters (the raw mail is always kept by the caller).
"""

from __future__ import annotations

import codecs
from email.message import Message

# Labels seen in the wild -> the codec that actually decodes what those senders write.
CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "hz-gb-2312": "hz",
    "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "unicode-1-1-utf-7": "utf-7",
    "ks_c_5601-1987": "cp949",
    "us-ascii": "utf-8",  # "ascii" mail with 8-bit bytes is nearly always UTF-8 in practice
    "ascii": "utf-8",
}


def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_bytes(data: bytes, label: str | None) -> tuple[str, bool]:
    """Decode ``data``; returns (text, clean). ``clean`` is False when the label was wrong or
    missing and a fallback or replacement characters were needed."""
    # No label means US-ASCII (RFC 2045), which our map reads as UTF-8.
    first = codec_for(label or "us-ascii")
    if first not in (None, "utf-8") and not data.isascii():
        # Valid multi-byte UTF-8 is vanishingly unlikely in real GBK/Big5 text, while clients
        # that label UTF-8 as gb2312 are common; gb18030 would decode it "cleanly" as mojibake.
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    tried: list[str] = []
    for codec in (first, "utf-8", "gb18030"):
        if codec is None or codec in tried:
            continue
        tried.append(codec)
        try:
            return data.decode(codec), codec == first
        except UnicodeDecodeError:
            continue
    return data.decode(first or "utf-8", "replace"), False


def part_text(part: Message) -> tuple[str, bool]:
    """The decoded text of a ``text/*`` part (transfer encoding undone), and whether it was clean."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        # A malformed multipart given as text: take what the parser kept.
        raw = part.get_payload()
        return (raw if isinstance(raw, str) else ""), False
    return decode_bytes(payload, part.get_content_charset())


def _undo_surrogates(text: str) -> str:
    """Raw 8-bit header bytes (some clients send GBK unencoded) arrive as surrogate escapes."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return decode_bytes(text.encode("utf-8", "surrogateescape"), None)[0]


def decode_header_value(raw: str) -> str:
    """A raw header value with its encoded words decoded through our charset map, unfolded.

    The stdlib decodes ``=?gb2312?…?=`` with Python's strict gb2312 and silently loses GBK-only
    characters; here every word goes through :func:`decode_bytes`."""
    from email.header import decode_header

    raw = _undo_surrogates(raw)
    try:
        chunks = decode_header(raw)
    except (ValueError, LookupError, AssertionError):
        return " ".join(raw.split())
    out: list[str] = []
    for value, charset in chunks:
        if isinstance(value, bytes):
            out.append(
                _undo_surrogates(decode_bytes(value, charset or "utf-8")[0])
                if charset
                else _undo_surrogates(value.decode("ascii", "surrogateescape"))
            )
        else:
            out.append(value)
    return " ".join("".join(out).split())


def raw_header(msg: Message, name: str) -> str | None:
    """The first raw (undecoded) value of a header, or None."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def header_decoded(msg: Message, name: str) -> str:
    raw = raw_header(msg, name)
    return decode_header_value(raw) if raw is not None else ""
