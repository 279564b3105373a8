"""The generic webhook route: HTTP in, adapter parse, intake within the channel's reply budget, answer.

Adapters verify and parse (channels/); this module owns the HTTP side for all of them:
- rebuilds the URL the provider signed from the configured public base (behind a TLS proxy aiohttp
  sees another scheme and host);
- maps :class:`WebhookRejected` to its status with a body naming the problem, counted by channel;
- runs each Inbound through intake with a deadline: a reply ready in time goes back inline (WeChat
  passive reply, TwiML); otherwise the provider gets its bare ack now and intake routes the reply
  through the outbox;
- applies delivery reports to the outbound records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from channels.base import (
    ChannelAdapter,
    DeliveryUpdate,
    HttpAnswer,
    Inbound,
    Route,
    WebhookRejected,
    WebhookRequest,
)
from gateway import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeOutcome:
    """What intake did with one inbound: texts to answer inline (empty: ack only)."""

    texts: tuple[str, ...] = ()
    duplicate: bool = False
    dropped: bool = False


# intake(inbound, deadline_monotonic) -> outcome; deliveries(channel, update) -> None
IntakeFn = Callable[[Inbound, float], Awaitable[IntakeOutcome]]
DeliveryFn = Callable[[str, DeliveryUpdate], Awaitable[None]]


def _answer(answer: HttpAnswer) -> web.Response:
    return web.Response(
        status=answer.status, body=answer.body, content_type=answer.content_type.split(";")[0]
    )


async def build_request(request: web.Request, public_base_url: str) -> WebhookRequest:
    body = await request.read()
    form: tuple[tuple[str, str], ...] = ()
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            posted = await request.post()
        except ValueError as exc:
            raise WebhookRejected(400, f"malformed form body: {exc}") from None
        form = tuple((k, v) for k, v in posted.items() if isinstance(v, str))
    return WebhookRequest(
        method=request.method,
        path=request.path,
        public_url=public_base_url.rstrip("/") + str(request.rel_url),
        query={k: v for k, v in request.query.items()},
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        form=form,
    )


async def _done_within(task: asyncio.Future[IntakeOutcome], within_s: float) -> bool:
    """Wait for ``task`` at most ``within_s`` seconds without cancelling it (what
    ``wait_for(shield(task))`` does, for one future and a timer instead of three futures and a
    task). If the caller itself is cancelled the task runs on, as under shield."""
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(within_s, wake)
    try:
        await woken
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


class WebhookRoutes:
    """Registers every adapter's routes on the public app."""

    def __init__(
        self,
        adapters: Sequence[ChannelAdapter],
        intake: IntakeFn,
        deliveries: DeliveryFn,
        public_base_url: str,
        reply_budgets: dict[str, float],
    ) -> None:
        self.adapters = adapters
        self.intake = intake
        self.deliveries = deliveries
        self.public_base_url = public_base_url
        self.reply_budgets = reply_budgets
        self.background: set[asyncio.Task[IntakeOutcome]] = set()

    def install(self, app: web.Application) -> None:
        for adapter in self.adapters:
            for route in adapter.routes():
                app.router.add_route(route.method, route.path, self._handler(adapter, route), name=route.name)

    def _handler(
        self, adapter: ChannelAdapter, route: Route
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self.handle(adapter, route, request)

        return handle

    async def handle(self, adapter: ChannelAdapter, route: Route, request: web.Request) -> web.Response:
        channel = adapter.name
        try:
            parsed = await adapter.parse_webhook(route, await build_request(request, self.public_base_url))
        except WebhookRejected as exc:
            metrics.webhook_rejected.labels(channel, str(exc.status)).inc()
            log.info(
                "webhook rejected", extra={"channel": channel, "status": exc.status, "reason": exc.reason}
            )
            return web.Response(status=exc.status, text=f"{exc.reason}\n")
        if parsed.dropped:
            metrics.flood_dropped.labels(channel).inc(parsed.dropped)
        for update in parsed.deliveries:
            await self.deliveries(channel, update)
        if parsed.answer is not None:
            return _answer(parsed.answer)
        budget = self.reply_budgets.get(channel, 0.0) if adapter.capabilities.inline_reply else 0.0
        deadline = time.monotonic() + budget
        texts: list[str] = []
        for inbound in parsed.inbounds:
            outcome = await self._run(inbound, deadline, budget, adapter.capabilities.inline_reply)
            texts.extend(outcome.texts)
        return _answer(adapter.render_reply(parsed.context, texts))

    async def _run(self, inbound: Inbound, deadline: float, budget: float, inline: bool) -> IntakeOutcome:
        task = asyncio.ensure_future(self.intake(inbound, deadline))
        # Intake itself decides, at apply time, whether the deadline has passed (then the reply
        # goes to the outbox). For inline channels the extra second only guards against a stuck
        # store: past it the provider gets its ack and the turn finishes in the background.
        # Channels that cannot answer inline are acknowledged only once the turn is stored.
        # A failing store raises here, and the provider gets a 5xx and retries later.
        timeout = budget + 1.0 if inline else 10.0
        if not await _done_within(task, timeout):
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return IntakeOutcome()
        return task.result()

    async def drain(self, within_s: float = 10.0) -> None:
        """Let turns that outlived their webhook finish (graceful shutdown)."""
        if self.background:
            await asyncio.wait(self.background, timeout=within_s)
