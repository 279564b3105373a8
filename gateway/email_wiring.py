"""The email channel inside the gateway: adapter, SMTP listener, IMAP pollers and the ``deliver``
callback that hands each parsed mail to the intake.

``deliver(inbound, raw)`` is the one place where email policy meets the store:

1. the raw mail goes to the media store (content-addressed, so a re-delivery stores nothing new)
   and becomes the Inbound's ``raw_ref``: the full original is always kept;
2. a delivery report updates the outbound records (``apply_delivery``) and marks permanently
   failed addresses unreachable; it never reaches the conversation;
3. a machine-written mail (vacation reply, bounce without DSN, noreply sender) creates nothing and
   sends nothing;
4. acknowledgements are rate-limited per sender (``ack_per_hour``): over the limit the mail is
   filed but answered no more (``ack_suppressed``);
5. everything else runs through the intake (dedupe by external id, dialogue, ticket), and only
   when that returned does the SMTP listener answer 250 / the IMAP poller set its flag.

Build it from ``gateway.channel_wiring._email`` with :func:`build`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from channels.base import DeliveryUpdate, Inbound, MediaRef, MediaSink
from channels.email.fake import MailSink, sandbox_mail_dir, start_sink
from channels.email.loops import delivery_updates
from channels.email.outbound import EmailAdapter
from channels.email.parser import MailParser
from channels.email.settings import EmailSettings, sandbox_settings
from gateway import metrics
from gateway.imap_poller import ImapPoller
from gateway.smtp_listener import SmtpListener
from store.mail_state import MailState
from store.media import content_id

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway.channel_wiring import Built
    from gateway.components import Gateway

log = logging.getLogger(__name__)

Intake = Callable[[Inbound], Awaitable[Any]]
ApplyDelivery = Callable[[str, DeliveryUpdate], Awaitable[Any]]


class EmailWiring:
    """What ``Gateway`` calls: ``start_listener``, ``start_pollers``, ``stop_listener``."""

    def __init__(
        self,
        settings: EmailSettings,
        redis: aioredis.Redis,
        *,
        tenant: str,
        ticket_prefix: str,
        intake: Intake,
        apply_delivery: ApplyDelivery,
        media_sink: MediaSink,
    ) -> None:
        self.settings = settings
        self.state = MailState(redis, tenant)
        self.tenant = tenant
        self.intake = intake
        self.apply_delivery = apply_delivery
        self.media_sink = media_sink
        self.parser = MailParser(
            settings,
            media_sink,
            tenant=tenant,
            ticket_prefix=ticket_prefix,
            thread_lookup=self.state.ticket_for,
        )
        self.listener: SmtpListener | None = None
        self.pollers: list[ImapPoller] = []

    # --- the deliver callback -------------------------------------------------------------------

    async def deliver(self, inbound: Inbound, raw: bytes) -> None:
        """Store one mail (see the module docstring); raises when it could not be stored."""
        attrs = inbound.attrs
        updates = delivery_updates(inbound)
        if updates or attrs.get("automated") == "1" or attrs.get("is_bounce") == "1":
            await self.media_sink(raw, "message/rfc822", "original.eml")  # kept for the record
        if updates:
            for update in updates:
                if update.permanent_failure and update.address:
                    await self.state.mark_unreachable(update.address, update.error_code or "bounce")
                await self.apply_delivery("email", update)
            metrics.inbound.labels("email", "bounce").inc()
            return
        if attrs.get("automated") == "1" or attrs.get("is_bounce") == "1":
            log.info("automatic mail filed nowhere (%s)", attrs.get("loop_reasons", ""))
            metrics.inbound.labels("email", "automated").inc()
            return
        # The original goes to disk (slow on a busy disk) while the turn runs: its content-addressed
        # id is known up front, and the 250 still waits for both.
        saving = asyncio.ensure_future(self.media_sink(raw, "message/rfc822", "original.eml"))
        try:
            # They wrote, so the address works; and acknowledgements are limited per sender.
            wants_ack = attrs.get("no_auto_reply") != "1" and attrs.get("ack_suppressed") != "1"
            allowed = await self.state.note_mail_from(
                inbound.sender, self.settings.ack_per_hour if wants_ack else None
            )
            extra: dict[str, str] = {} if allowed else {"ack_suppressed": "1", "ack_rate_limited": "1"}
            # The original mail travels with what the citizen sent, so the ticket it files or
            # supplements keeps it (quoted history and all) beside the stripped text.
            original = MediaRef(content_id(raw), "message/rfc822", len(raw), "original.eml")
            await self.intake(
                dataclasses.replace(
                    inbound,
                    raw_ref=original.media_id,
                    media=(*inbound.media, original),
                    attrs={**attrs, **extra},
                )
            )
        finally:
            await saving

    # --- roles ---------------------------------------------------------------------------------

    async def start_listener(self, host: str, port: int) -> str:
        self.listener = SmtpListener(self.settings, self.parser, self.deliver, host=host, port=port)
        bound = await self.listener.start()
        return f"smtp://{host}:{bound}"

    async def stop_listener(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None

    def start_pollers(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        tasks = []
        for mailbox in self.settings.imap:
            poller = ImapPoller(mailbox, self.parser, self.deliver, self.state)
            self.pollers.append(poller)
            tasks.append(
                asyncio.create_task(_run_until(poller, stop), name=f"imap-supervisor-{mailbox.name}")
            )
        return tasks


async def _run_until(poller: ImapPoller, stop: asyncio.Event) -> None:
    poller.start()
    await stop.wait()
    await poller.close()


class _SinkRunner:
    """The mail sink as one of the gateway's fakes (which it stops with ``cleanup()``)."""

    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def cleanup(self) -> None:
        await self.sink.close()


async def build(gw: Gateway, settings: EmailSettings | None, built: Built) -> None:
    """Add the email adapter and its wiring to ``built`` (sandbox: with the local mail sink)."""
    if gw.sandbox:
        sink = await start_sink(sandbox_mail_dir(Path(gw.settings.data_dir)))
        built.fakes.append(cast(Any, _SinkRunner(sink)))
        settings = sandbox_settings(gw.settings.data_dir, relay_port=sink.port)
    if settings is None:
        return
    tenant = gw.settings.tenant
    wiring = EmailWiring(
        settings,
        gw.redis,
        tenant=tenant.id,
        ticket_prefix=tenant.prefix,
        intake=gw.intake.handle,
        apply_delivery=gw.apply_delivery,
        media_sink=gw.media.save,
    )
    built.adapters.append(EmailAdapter(settings, threads=wiring.state))
    built.email = wiring
