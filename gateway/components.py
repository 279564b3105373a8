"""The gateway's parts, built from settings and wired together: adapters, store, intake,
dispatcher, scheduler, listeners. `runtime.serve` owns the process; this owns the wiring.

With ``sandbox`` every provider is replaced by its loopback fake (DESIGN.md "Defaults and the
sandbox contract"): the fake WeChat API and fake Twilio record what they were "sent" under
``<data-dir>/sandbox/``, and outbound mail goes to a local SMTP sink writing ``.eml`` files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from channels.base import ChannelAdapter, DeliveryUpdate, verify_adapter
from conversation.catalogue import Catalogue
from conversation.settings import EngineSettings
from conversation.settings import settings_from_mapping as engine_settings_from_mapping
from gateway.config import ConfigError, Settings
from gateway.dispatcher import Dispatcher, DispatchSettings
from gateway.intake import Intake
from gateway.rendering import Renderer
from gateway.scheduler import Scheduler
from gateway.staff import setup_staff_api, survey
from gateway.staff.context import StaffContext
from gateway.staff.webhooks_out import WebhookSender
from gateway.webhooks import WebhookRoutes
from store.apply import TenantIds
from store.casestore import CaseStore
from store.media import LocalMediaStore

log = logging.getLogger(__name__)


def engine_settings(settings: Settings) -> EngineSettings:
    raw = dict(settings.conversation)
    raw.setdefault("language", settings.tenant.language)
    raw.setdefault("ticket_prefix", settings.tenant.prefix)
    raw.setdefault("timezone", settings.tenant.timezone)
    raw.setdefault("reply_working_days", settings.tenant.reply_deadline_days)
    if settings.sms.get("confirmation") is False:
        # [sms] confirmation = false: file without the "reply 1 to confirm" text, to save messages.
        channels = raw.get("confirm_channels", ["wechat", "sms"])
        raw["confirm_channels"] = [c for c in channels if c != "sms"]
    try:
        return engine_settings_from_mapping(raw)
    except ValueError as exc:
        raise ConfigError("conversation", str(exc)) from None


def parse_channel_settings(settings: Settings, sandbox: bool) -> dict[str, Any]:
    """Each channel parses its own table; errors name the key. Sandbox settings come later,
    once the fakes' addresses are known."""
    from channels.email.settings import parse_settings as parse_email
    from channels.sms.settings import parse_settings as parse_sms
    from channels.wechat.settings import parse_settings as parse_wechat

    parsed: dict[str, Any] = {}
    engine_settings(settings)
    for name, parse in (("wechat", parse_wechat), ("sms", parse_sms), ("email", parse_email)):
        raw = getattr(settings, name)
        if not raw or (sandbox and name != "email"):
            continue
        try:
            parsed[name] = parse(raw, name)
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None
    return parsed


@dataclass
class Gateway:
    settings: Settings
    redis: aioredis.Redis
    sandbox: bool
    store: CaseStore
    media: LocalMediaStore
    catalogue: Catalogue
    intake: Intake
    staff: StaffContext
    adapters: dict[str, ChannelAdapter] = field(default_factory=dict)
    reply_budgets: dict[str, float] = field(default_factory=dict)
    email: Any = None  # gateway.email_wiring.EmailWiring when email is configured
    session: aiohttp.ClientSession | None = None
    fakes: list[web.AppRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    webhooks: WebhookRoutes | None = None
    dispatcher: Dispatcher | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    async def create(
        cls, settings: Settings, redis: aioredis.Redis, sandbox: bool, clock: Callable[[], float] = time.time
    ) -> Gateway:
        """``clock`` (unix seconds) is injectable so end-to-end tests can move time (48-hour
        windows, quiet hours, survey expiry) without patching anything."""
        tenant = settings.tenant
        parsed = parse_channel_settings(settings, sandbox)
        store = CaseStore(redis, clock=clock, tenants={tenant.id: TenantIds(tenant.prefix, tenant.timezone)})
        media = LocalMediaStore(settings.data_dir)  # under <data_dir>/media
        catalogue = Catalogue.load(default_language=tenant.language)
        staff = StaffContext(
            redis=redis,
            tenant=tenant,
            store=store,
            media=media,
            clock=clock,
            webhook_allow_private=bool(settings.webhooks.get("allow_private")),
        )
        intake = Intake(
            redis,
            store,
            engine_settings(settings),
            catalogue,
            tenant,
            rating_policy=lambda ticket, rating, comment, actor, now, amend: survey.rating_changes(
                ticket, rating, comment, actor, now, tenant, amend=amend
            ),
            clock=clock,
            wait_aof=settings.redis.wait_aof,
        )
        gw = cls(settings, redis, sandbox, store, media, catalogue, intake, staff, clock=clock)
        gw.session = aiohttp.ClientSession()
        try:
            await gw._build_channels(parsed)
        except BaseException:
            await gw.close()
            raise
        return gw

    async def _build_channels(self, parsed: Mapping[str, Any]) -> None:
        from gateway import channel_wiring

        built = await channel_wiring.build(self, parsed)
        for adapter in built.adapters:
            verify_adapter(adapter)
            self.adapters[adapter.name] = adapter
        self.reply_budgets.update(built.reply_budgets)
        self.fakes.extend(built.fakes)
        self.email = built.email
        self.adapters["webhook"] = WebhookSender(
            self.redis,
            self.settings.tenant.id,
            allow_private=bool(self.settings.webhooks.get("allow_private")),
        )

    # -- apps --------------------------------------------------------------------------------------

    def install_public(self, app: web.Application) -> None:
        self.webhooks = WebhookRoutes(
            [a for name, a in self.adapters.items() if name != "webhook"],
            self.intake.handle,
            self.apply_delivery,
            self.settings.public_base_url,
            self.reply_budgets,
        )
        self.webhooks.install(app)

    def install_staff(self, app: web.Application) -> None:
        setup_staff_api(app, self.staff)

    async def apply_delivery(self, channel: str, update: DeliveryUpdate) -> None:
        await self._dispatcher().apply_delivery(self.settings.tenant.id, channel, update)

    def _dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            d = self.settings.dispatcher
            self.dispatcher = Dispatcher(
                self.redis,
                [self.settings.tenant.id],
                self.adapters,
                Renderer(self.catalogue).render,
                DispatchSettings(
                    max_attempts=d.max_attempts,
                    backoff_base=d.backoff_base_s,
                    backoff_cap=d.backoff_max_s,
                    claim_idle_ms=int(d.reclaim_idle_s * 1000),
                    batch=d.batch,
                ),
                clock=self.clock,
            )
        return self.dispatcher

    # -- background roles --------------------------------------------------------------------------

    async def start_roles(self, roles: set[str]) -> dict[str, str]:
        addresses: dict[str, str] = {}
        if "smtp" in roles and self.email is not None and self.settings.smtp.enabled:
            addresses["smtp"] = await self.email.start_listener(
                self.settings.smtp.host, self.settings.smtp.port
            )
        if "imap" in roles and self.email is not None:
            self.tasks += self.email.start_pollers(self.stop_event)
        if "worker" in roles:
            self.tasks.append(asyncio.create_task(self._dispatcher().run(self.stop_event), name="dispatcher"))
            scheduler = Scheduler(
                self.redis, self.settings.tenant.id, self.intake, self.staff, clock=self.clock
            )
            self.tasks.append(asyncio.create_task(scheduler.run(self.stop_event), name="scheduler"))
        return addresses

    async def close(self) -> None:
        self.stop_event.set()
        if self.email is not None:
            await self.email.stop_listener()
        if self.webhooks is not None:
            await self.webhooks.drain()
        for task in self.tasks:
            try:
                await asyncio.wait_for(task, timeout=15)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("background task failed while stopping", extra={"task": task.get_name()})
        for adapter in self.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()
        for runner in self.fakes:
            await runner.cleanup()
        if self.session is not None:
            await self.session.close()
