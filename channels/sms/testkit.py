"""Helpers shared by the SMS tests, the end-to-end tests and the bench: fixture loading, building
a :class:`WebhookRequest` the way the gateway does, and a directory media sink.

Kept in the package (like ``fake_twilio``) so the same fixtures drive tests, replays and benches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from channels.base import MediaRef, MediaSink, WebhookRequest
from channels.sms.simulator import sign

FIXTURES = Path(__file__).parent / "fixtures"


def load_form(name: str, **substitutions: str) -> list[tuple[str, str]]:
    """``fixtures/twilio/<name>.form`` as ordered pairs; ``{media_base}``-style placeholders filled."""
    text = (FIXTURES / "twilio" / f"{name}.form").read_text(encoding="utf-8").strip()
    pairs = parse_qsl(text, keep_blank_values=True)
    return [(k, v.format(**substitutions) if "{" in v else v) for k, v in pairs]


def twilio_request(
    public_url: str,
    form: list[tuple[str, str]],
    token: str,
    headers: Mapping[str, str] | None = None,
    signature: str | None = None,
) -> WebhookRequest:
    """A signed form webhook as the gateway hands it to the adapter (headers lower-cased)."""
    sig = signature if signature is not None else sign(token, public_url, dict(form))
    all_headers = {"x-twilio-signature": sig, **{k.lower(): v for k, v in (headers or {}).items()}}
    parts = urlsplit(public_url)
    return WebhookRequest(
        method="POST",
        path=parts.path,
        public_url=public_url,
        query=dict(parse_qsl(parts.query)),
        headers=all_headers,
        body=b"",
        form=tuple(form),
    )


def dir_media_sink(root: Path) -> MediaSink:
    """A content-addressed directory sink (the shape of the media store's local backend)."""

    async def sink(data: bytes, content_type: str, filename: str) -> MediaRef:
        digest = hashlib.sha256(data).hexdigest()
        root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (test helper, tiny files)
        (root / digest).write_bytes(data)
        return MediaRef(media_id=digest, content_type=content_type, size=len(data), filename=filename)

    return sink
