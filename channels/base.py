"""The channel contract: canonical message types and the adapter Protocol.

Every channel package (``wechat``, ``sms``, ``email``) turns provider input into
:class:`Inbound` values and sends :class:`Outbound` values. Adapters never touch the store
and never decide dialogue: the gateway owns HTTP, persistence and retries (STYLE.md 3, 6, 12).

Addresses are ``scheme:path`` strings, one per channel identity of a citizen:
``wechat:<appid>:<openid>``, ``tel:+8613800000000`` (E.164), ``mailto:someone@example.com``
(domain lower-cased). A citizen may hold several; the ticket keeps all that are known.

Inbound text is normalised once, at construction: valid Unicode, no NULs, NFC. Times are UTC.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable

# ---------------------------------------------------------------------------------------------
# Addresses


class AddressError(ValueError):
    """An address string that is not ``scheme:path`` with a known scheme."""


# ``webhook:<subscription id>`` addresses an outbound webhook subscription (gateway.staff).
ADDRESS_SCHEMES = ("wechat", "tel", "mailto", "staff", "webhook")


def wechat_address(appid: str, openid: str) -> str:
    return f"wechat:{appid}:{openid}"


def tel_address(e164: str) -> str:
    if not e164.startswith("+") or not e164[1:].isdigit():
        raise AddressError(f"tel address needs an E.164 number, got {e164!r}")
    return f"tel:{e164}"


def mailto_address(email: str) -> str:
    local, sep, domain = email.strip().rpartition("@")
    if not sep or not local or not domain:
        raise AddressError(f"mailto address needs local@domain, got {email!r}")
    return f"mailto:{local}@{domain.lower()}"


def address_scheme(address: str) -> str:
    """The channel scheme of an address (``wechat``, ``tel``, ``mailto``)."""
    scheme, sep, rest = address.partition(":")
    if not sep or not rest or scheme not in ADDRESS_SCHEMES:
        raise AddressError(f"not a Sulai address: {address!r}")
    return scheme


SCHEME_CHANNEL = {"wechat": "wechat", "tel": "sms", "mailto": "email", "webhook": "webhook"}


def address_channel(address: str) -> str:
    """The channel that can reach an address."""
    return SCHEME_CHANNEL.get(address_scheme(address), "none")


# ---------------------------------------------------------------------------------------------
# Inbound


# Category Cc is exactly C0, DEL and C1; tab and newline are kept.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Valid Unicode, no NUL or other C0/C1 controls except tab/newline, CRLF as LF, NFC."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates → "?"
    text = _CONTROLS.sub("", text.replace("\r\n", "\n"))
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class InboundKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    LOCATION = "location"
    LINK = "link"
    EVENT = "event"  # subscribe, scan, click, unsubscribe … (see Inbound.event)
    CONSENT = "consent"  # STOP/START/HELP style keywords, decided by the channel
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A reference to bytes already in the media store (never the bytes themselves)."""

    media_id: str  # content-addressed id from the media store
    content_type: str
    size: int
    filename: str = ""
    flagged: bool = False  # e.g. an executable attachment: kept, but marked for staff


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    label: str = ""


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a citizen (or a provider on their behalf) sent us, channel-independent.

    ``external_id`` is the provider's message id, or one derived deterministically for events and
    mails without an id; it is the idempotency key for the whole turn.
    ``event`` names an event (``subscribe``, ``scan``, ``unsubscribe``, ``click``, ``location``,
    ``opt_out``, ``opt_in``, ``help``, ``delivery_report`` …) when ``kind`` is EVENT or CONSENT.
    ``attrs`` carries channel extras the gateway may use (email ``message_id``, ``references``,
    ``subject``, ``no_auto_reply``; WeChat ``click_key``; SMS ``opt_out_type``), all strings.
    """

    channel: str
    account: str
    sender: str
    external_id: str
    kind: InboundKind
    received_at: datetime
    text: str = ""
    tenant: str = "default"
    media: tuple[MediaRef, ...] = ()
    location: Location | None = None
    entry_point: str | None = None
    event: str | None = None
    raw_ref: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))
        object.__setattr__(self, "attrs", _frozen_map(self.attrs))
        address_scheme(self.sender)
        if not self.external_id:
            raise ValueError("Inbound.external_id must not be empty")
        if self.received_at.tzinfo is None:
            raise ValueError("Inbound.received_at must be timezone-aware")
        object.__setattr__(self, "received_at", self.received_at.astimezone(UTC))


# ---------------------------------------------------------------------------------------------
# Outbound


class Purpose(enum.StrEnum):
    REPLY = "reply"  # answer within a dialogue the citizen is having now
    TICKET_CREATED = "ticket-created"
    STATUS = "status"  # accepted, assigned, replied, resolved, redispatched, rejected
    SURVEY = "survey"
    REMINDER = "reminder"
    STAFF_REPLY = "staff-reply"
    WEBHOOK = "webhook"  # an event for a subscribed government system, not a citizen


# Purposes that may reach a citizen who opted out of SMS pushes: only answers to what they asked.
CONVERSATIONAL_PURPOSES = frozenset({Purpose.REPLY, Purpose.TICKET_CREATED})


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message to send, keyed in the catalogue so each channel renders it its own way.

    ``id`` is deterministic (derived from what caused it), so a replayed cause produces the same
    id and the dispatcher can refuse to send an id twice.
    """

    id: str
    tenant: str
    recipient: str
    purpose: Purpose
    key: str
    params: Mapping[str, str] = field(default_factory=dict)
    ticket_id: str | None = None
    not_before: float = 0.0  # unix seconds; quiet hours push this to the morning
    language: str = "zh-CN"
    attrs: Mapping[str, str] = field(default_factory=dict)  # e.g. email in_reply_to/references

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen_map(self.params))
        object.__setattr__(self, "attrs", _frozen_map(self.attrs))
        address_scheme(self.recipient)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """The catalogue text of an Outbound, already rendered for the target channel."""

    text: str
    subject: str = ""  # email only
    html: str = ""  # email only, optional


class SendErrorCode(enum.StrEnum):
    """The closed set of send failures. The dispatcher's retry policy is driven by these alone."""

    TEMPORARY = "temporary"  # network, 5xx, provider busy: try again later
    RATE_LIMITED = "rate-limited"  # 429 or our own per-address limit: try again later
    WINDOW_CLOSED = "window-closed"  # channel rules forbid this message now: use another path
    OPTED_OUT = "opted-out"  # the citizen asked for no more messages on this address
    UNREACHABLE = "unreachable"  # the address does not exist or blocked us
    REJECTED = "rejected"  # the provider refused the content or the request: permanent
    MISCONFIGURED = "misconfigured"  # credentials/template ids wrong: permanent until fixed

    @property
    def retryable(self) -> bool:
        return self in (SendErrorCode.TEMPORARY, SendErrorCode.RATE_LIMITED)

    @property
    def try_other_address(self) -> bool:
        """Whether another address of the same citizen should get the message instead."""
        return self in (SendErrorCode.WINDOW_CLOSED, SendErrorCode.OPTED_OUT, SendErrorCode.UNREACHABLE)


class SendError(Exception):
    """A failed send, classified. ``provider_code`` keeps the provider's own code for the record."""

    def __init__(
        self, code: SendErrorCode, message: str = "", provider_code: str = "", retry_after: float = 0.0
    ) -> None:
        super().__init__(f"{code}: {message}" if message else str(code))
        self.code = code
        self.message = message
        self.provider_code = provider_code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.code.retryable


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str
    status: str = "sent"  # provider status as mapped by the adapter: queued, sent, delivered
    path: str = ""  # how it went out, e.g. "custom", "template", "subscribe", "twiml", "smtp"


# ---------------------------------------------------------------------------------------------
# Webhooks: the gateway owns HTTP; adapters verify and parse


class WebhookRejected(Exception):
    """Input that must be refused. ``status`` is 400 (malformed, naming the problem), 403
    (authentication failed), 404 (unknown account) or 413 (too large)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What the gateway hands an adapter. ``public_url`` is rebuilt from the configured public
    base URL plus the path and query, because behind a TLS proxy aiohttp sees another scheme."""

    method: str
    path: str
    public_url: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    form: tuple[tuple[str, str], ...] = ()  # decoded form fields, in order, for form posts
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """A provider's report on something we sent (Twilio status callback, WeChat job finished,
    an email DSN)."""

    provider_id: str
    status: str
    error_code: str = ""
    permanent_failure: bool = False
    address: str = ""  # the address concerned, when the report names it (DSNs)


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """The parsed form of one webhook call.

    ``answer`` is sent as-is when set (URL verification, provider acks); otherwise the gateway
    runs the inbounds through intake and asks the adapter to ``render_reply`` within the channel's
    reply budget. ``context`` is opaque adapter state needed to render that reply (e.g. WeChat's
    encryption key that worked, nonce and timestamp).
    """

    inbounds: tuple[Inbound, ...] = ()
    deliveries: tuple[DeliveryUpdate, ...] = ()
    answer: HttpAnswer | None = None
    context: object = None
    dropped: int = 0  # inbounds the adapter dropped (per-sender flood limit); the gateway counts them


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    name: str


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_text_chars: int
    inline_reply: bool  # can answer within the webhook's HTTP response
    media: bool


@runtime_checkable
class ChannelAdapter(Protocol):
    """What every channel provides. The gateway verifies the shape on registration
    (:func:`verify_adapter`) rather than finding hooks by name (STYLE.md, aiosmtpd wart)."""

    name: str
    capabilities: Capabilities

    def routes(self) -> Sequence[Route]:
        """Webhook routes this adapter serves on the public app (empty for SMTP-only email)."""
        ...

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        """Verify and parse; raise :class:`WebhookRejected` on bad input. May download media
        into the media store (it is not the case store) but writes nothing else."""
        ...

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        """The HTTP answer to a webhook: inline reply of ``texts`` or a bare ack when empty."""
        ...

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        """Send one message; raise :class:`SendError` on failure."""
        ...

    def secrets(self) -> Iterable[str]:
        """Values that must never appear in logs (tokens, keys)."""
        ...

    async def close(self) -> None: ...


def verify_adapter(adapter: object) -> ChannelAdapter:
    """Refuse an adapter that does not fully implement the contract."""
    missing = [
        name
        for name in (
            "name",
            "capabilities",
            "routes",
            "parse_webhook",
            "render_reply",
            "send",
            "secrets",
            "close",
        )
        if not hasattr(adapter, name)
    ]
    if missing:
        raise TypeError(f"{type(adapter).__name__} is not a channel adapter: missing {', '.join(missing)}")
    if not isinstance(adapter, ChannelAdapter):
        raise TypeError(f"{type(adapter).__name__} is not a channel adapter")
    return adapter


# A media sink channels may use to save downloaded media: (bytes, content_type, filename) -> ref.
MediaSink = Callable[[bytes, str, str], Awaitable[MediaRef]]
