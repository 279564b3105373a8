"""The SMS channel adapter: one channel, a pluggable provider (Twilio or Aliyun).

The provider verifies and parses its pushes and talks to its API. This layer adds what does not
depend on the provider:

- consent keywords (STOP/START/HELP, 退订/TD/T, 帮助) become ``Inbound(kind=CONSENT)`` events and
  the number's opt-out is recorded in shared state; they never become ticket text and are never
  flood-limited (a STOP must always get through);
- a per-number inbound flood limit: the first text over the limit is answered "please wait"
  once per window (catalogue key :data:`FLOOD_KEY`), the rest are dropped; the count of dropped
  texts is ``WebhookResult.dropped``, which the gateway counts in ``sulai_flood_dropped_total``;
- on send: opted-out numbers get only conversational purposes (channels.base), and the
  per-number send rate (segments/s of our sending number, across processes) is enforced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp

from channels.base import (
    CONVERSATIONAL_PURPOSES,
    Capabilities,
    HttpAnswer,
    Inbound,
    InboundKind,
    MediaSink,
    Outbound,
    RenderedMessage,
    Route,
    SendError,
    SendErrorCode,
    SendResult,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
    tel_address,
)
from channels.sms import consent
from channels.sms.phone import PhoneError, to_e164
from channels.sms.providers import IncomingSms, SmsProvider
from channels.sms.segments import count_segments
from channels.sms.settings import SmsSettings
from channels.sms.state import Flood, SmsState

FLOOD_KEY = "flood_wait"  # catalogue key of the "please wait" answer

# Looks up the SMS text of a catalogue key in the tenant's language (the gateway supplies it;
# citizen-facing words live only in the catalogue).
CatalogueText = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class SmsContext:
    """What ``render_reply`` needs, and what the gateway may count."""

    route: str
    flood_dropped: int = 0  # texts dropped by the inbound flood limit in this push


def build_provider(
    settings: SmsSettings, media_sink: MediaSink, session: aiohttp.ClientSession | None
) -> SmsProvider:
    if settings.provider == "twilio" and settings.twilio is not None:
        from channels.sms.providers.twilio import TwilioProvider

        twilio: SmsProvider = TwilioProvider(
            settings.twilio, settings.status_callback_url, media_sink, settings.default_region, session
        )
        return twilio
    if settings.provider == "aliyun" and settings.aliyun is not None:
        from channels.sms.providers.aliyun import AliyunProvider

        return AliyunProvider(settings.aliyun, settings.numbers[0], settings.default_region, session)
    raise ValueError(f"sms.provider {settings.provider!r} has no settings")


class SmsAdapter:
    """channels.base.ChannelAdapter for SMS."""

    name = "sms"

    def __init__(
        self,
        settings: SmsSettings,
        *,
        state: SmsState,
        media_sink: MediaSink,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        catalogue_text: CatalogueText | None = None,
        provider: SmsProvider | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self.catalogue_text = catalogue_text
        self.provider = provider or build_provider(settings, media_sink, session)
        self.capabilities = Capabilities(
            max_text_chars=1600, inline_reply=self.provider.inline_reply, media=True
        )

    def routes(self) -> Sequence[Route]:
        return self.provider.routes()

    # --- inbound ------------------------------------------------------------------------------

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        push = await self.provider.parse(route, request)
        tenant = self.settings.tenant
        for number in push.opted_out:
            await self.state.set_opted_out(tenant, tel_address(number), True)
        inbounds: list[Inbound] = []
        warn, dropped = False, 0
        for sms in push.messages:
            if sms.to not in self.settings.numbers:
                raise WebhookRejected(404, "not one of our numbers")
            event = consent.classify(sms.text, sms.opt_out_type)
            if event is not None:
                await self._record_consent(sms.sender, event)
                inbounds.append(self._inbound(sms, request, event))
                continue
            verdict = await self.state.inbound_hit(
                tenant,
                tel_address(sms.sender),
                self.settings.inbound_limit,
                self.settings.inbound_window_s,
                self.clock(),
            )
            if verdict is Flood.OK:
                inbounds.append(self._inbound(sms, request, None))
            else:
                dropped += 1
                warn = warn or verdict is Flood.WARN
        context = SmsContext(route=route.name, flood_dropped=dropped)
        answer = push.answer
        if answer is None and not inbounds and (dropped or not push.deliveries):
            texts = [self.catalogue_text(FLOOD_KEY)] if warn and self.catalogue_text else []
            answer = self.provider.render_reply(texts)
        return WebhookResult(
            inbounds=tuple(inbounds),
            deliveries=push.deliveries,
            answer=answer,
            context=context,
            dropped=dropped,
        )

    async def _record_consent(self, sender: str, event: str) -> None:
        if event in (consent.OPT_OUT, consent.OPT_IN):
            await self.state.set_opted_out(
                self.settings.tenant, tel_address(sender), event == consent.OPT_OUT
            )

    def _inbound(self, sms: IncomingSms, request: WebhookRequest, event: str | None) -> Inbound:
        attrs = {k: v for k, v in sms.attrs.items() if v}
        if sms.opt_out_type:
            attrs["opt_out_type"] = sms.opt_out_type
        if event is None:
            kind = InboundKind.IMAGE if sms.media and not sms.text.strip() else InboundKind.TEXT
        else:
            kind = InboundKind.CONSENT
        return Inbound(
            channel=self.name,
            account=sms.to,
            sender=tel_address(sms.sender),
            external_id=sms.external_id,
            kind=kind,
            received_at=request.received_at,
            text="" if event else sms.text,
            tenant=self.settings.tenant,
            media=sms.media,
            event=event,
            raw_ref=f"{self.provider.name}:{sms.external_id}",
            attrs=attrs,
        )

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        return self.provider.render_reply(texts)

    # --- outbound -----------------------------------------------------------------------------

    def _from_number(self, outbound: Outbound) -> str:
        wanted = outbound.attrs.get("from", "")
        return wanted if wanted in self.settings.numbers else self.settings.numbers[0]

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        tenant = outbound.tenant
        try:
            to = to_e164(outbound.recipient.removeprefix("tel:"), self.settings.default_region)
        except PhoneError as exc:
            raise SendError(SendErrorCode.UNREACHABLE, str(exc)) from exc
        address = tel_address(to)
        if outbound.purpose not in CONVERSATIONAL_PURPOSES and await self.state.is_opted_out(tenant, address):
            raise SendError(SendErrorCode.OPTED_OUT, "the number opted out of SMS pushes")
        from_ = self._from_number(outbound)
        _, segments = count_segments(message.text)
        wait = await self.state.acquire_send(
            tenant, from_, segments, self.settings.send_rate, self.settings.send_burst
        )
        if wait > 0:
            raise SendError(SendErrorCode.RATE_LIMITED, f"send rate of {from_}", retry_after=wait)
        try:
            return await self.provider.send(to, from_, outbound, message)
        except SendError as exc:
            if exc.code is SendErrorCode.OPTED_OUT:
                await self.state.set_opted_out(tenant, address, True)
            raise

    def secrets(self) -> Iterable[str]:
        return self.provider.secrets()

    async def close(self) -> None:
        await self.provider.close()
