"""The provider seam of the SMS channel.

One SMS channel, several providers (PROTOCOLS.md D): each turns its own inbound push into
:class:`IncomingSms` values (Twilio posts one signed form; Aliyun posts an unsigned JSON array)
with its exact acknowledgement, and sends either free text (Twilio) or an approved template with
parameters keyed by the catalogue key (Chinese carriers). Consent keywords, flood limits, opt-out
checks and send rates are provider-agnostic and live in :mod:`channels.sms.adapter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from channels.base import (
    DeliveryUpdate,
    HttpAnswer,
    MediaRef,
    Outbound,
    RenderedMessage,
    Route,
    SendResult,
    WebhookRequest,
)


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """One text as a provider delivered it, numbers already in E.164."""

    sender: str
    to: str
    text: str
    external_id: str
    media: tuple[MediaRef, ...] = ()
    opt_out_type: str = ""  # Twilio Advanced Opt-Out's verdict, when it matched
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderPush:
    """A parsed push. ``answer`` is the provider's exact acknowledgement when it needs one that
    does not depend on the dialogue (Aliyun always; Twilio never: its answer carries the reply)."""

    messages: tuple[IncomingSms, ...] = ()
    deliveries: tuple[DeliveryUpdate, ...] = ()
    opted_out: tuple[str, ...] = ()  # E.164 numbers the provider reports as unsubscribed
    answer: HttpAnswer | None = None


class SmsProvider(Protocol):
    name: str
    inline_reply: bool  # whether the webhook answer can carry the reply (TwiML)

    def routes(self) -> Sequence[Route]: ...

    async def parse(self, route: Route, request: WebhookRequest) -> ProviderPush:
        """Verify and parse a push; raise ``WebhookRejected``."""
        ...

    def render_reply(self, texts: Sequence[str]) -> HttpAnswer: ...

    async def send(self, to: str, from_: str, outbound: Outbound, message: RenderedMessage) -> SendResult:
        """Send to an E.164 number; raise ``SendError`` classified by the provider's codes."""
        ...

    def secrets(self) -> Iterable[str]: ...

    async def close(self) -> None: ...


def missing_fields(form: dict[str, str], names: Sequence[str]) -> list[str]:
    return [name for name in names if not form.get(name)]
