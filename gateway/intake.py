"""Intake: one Inbound → one conversation turn, applied atomically (DESIGN.md "The path of one message").

dedupe → lock → load state → engine step → translate actions → one store write → reply.

- **Dedupe.** The inbound's external id is the idempotency key. A replay (WeChat retry, Twilio
  retry, IMAP re-fetch) finds the stored reply and changes nothing; a retry that arrives while
  the first delivery is still being processed finds the in-flight lock and gets a bare ack —
  so a retry never creates a second effect nor a second reply.
- **One turn at a time.** The state is read with its version; the write fails on a version
  conflict and the turn is stepped again on the new state.
- **Inline or outbox.** When the caller's deadline (the channel's reply budget) has not passed at
  apply time, replies are returned for the webhook answer and stored as the replay answer;
  otherwise they go into the outbox in the same write. Either way exactly one path carries them.
- **Two round trips** for any turn, one that files a ticket included: the read (state +
  idempotency mark + lock + the tickets the turn may need, one script) and the apply script.
  Ticket summaries are read only when the turn can use them (status queries, supplements,
  ratings); the read script finds them from the state itself.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from channels.base import Inbound, Outbound
from conversation.actions import (
    Reply,
)
from conversation.catalogue import Catalogue
from conversation.commands import Command, parse_command
from conversation.engine import TurnContext, step, ticket_ids_mentioned
from conversation.settings import EngineSettings
from conversation.state import ConversationState, Mode
from gateway import metrics
from gateway.config import TenantSettings
from gateway.staff.webhooks_out import TurnWebhooks
from gateway.turn_actions import (
    ENGINE_PH,
    ENGINE_PH_JSON,
    STORE_PH,
    RatingPolicy,
    Translation,
    TurnActions,
    summary,
    swap,
)
from gateway.webhooks import IntakeOutcome
from store import keys
from store.casestore import CaseStore
from store.model import (
    Ticket,
)
from store.ticketid import new_query_code
from store.turns import ApplyOutcome, TurnRead, Turns, TurnWrite

log = logging.getLogger(__name__)


# Seconds kept in hand between "apply done" and the provider's own deadline, for the answer itself.
INLINE_MARGIN_S = 0.05
INFLIGHT_TTL_MS = 30_000
MAX_CONFLICT_RETRIES = 8

# In-flight lock tokens only need to be unique: a per-process random prefix and a counter.
_TOKEN_PREFIX = secrets.token_hex(6)
_token_counter = itertools.count(1)

# Which catalogue variant a channel's inline reply uses.
INLINE_VARIANT = {"wechat": "text", "sms": "sms"}


@functools.lru_cache(maxsize=256)
def _child(metric: Any, *labels: str) -> Any:
    """A metric's child for these label values, looked up once (labels() locks on every call)."""
    return metric.labels(*labels)


class Intake:
    def __init__(
        self,
        redis: aioredis.Redis,
        store: CaseStore,
        engine_settings: EngineSettings,
        catalogue: Catalogue,
        tenant: TenantSettings,
        *,
        rating_policy: RatingPolicy | None = None,
        clock: Callable[[], float] = time.time,
        wait_aof: bool = False,
    ) -> None:
        self.redis = redis
        self.store = store
        self.turns = Turns(store)
        self.engine_settings = engine_settings
        self.catalogue = catalogue
        self.tenant = tenant
        self.actions = TurnActions(tenant, rating_policy)
        self.clock = clock
        self.wait_aof = wait_aof
        # Government systems subscribed to ticket events hear about citizen-side changes too.
        self.webhooks = TurnWebhooks(redis)

    # -- the turn ------------------------------------------------------------------------------

    async def handle(self, inbound: Inbound, deadline: float = 0.0) -> IntakeOutcome:
        """Run one inbound; ``deadline`` (time.monotonic()) is when an inline answer is too late."""
        started = time.perf_counter()
        try:
            return await self._handle(inbound, deadline)
        finally:
            _child(metrics.engine_seconds, inbound.channel).observe(time.perf_counter() - started)

    async def _handle(self, inbound: Inbound, deadline: float) -> IntakeOutcome:
        tenant, address, ext = inbound.tenant, inbound.sender, inbound.external_id
        token = f"{_TOKEN_PREFIX}{next(_token_counter):x}"
        asked, status = self._asked(inbound)
        recent = self.engine_settings.status_list_limit * 2 if status else 0
        for attempt in range(MAX_CONFLICT_RETRIES):
            # State, version, stored reply, the in-flight lock and the tickets the turn may need,
            # in one round trip (store/scripts/read_turn.lua).
            read = await self.turns.read_turn(
                tenant,
                address,
                ext,
                lock_token=token if attempt == 0 else "",
                lock_ttl_ms=INFLIGHT_TTL_MS,
                ticket_ids=asked,
                recent_tickets=recent,
                never=(STORE_PH, ENGINE_PH),
            )
            if read.stored_reply is not None:
                metrics.dedupe_hits.labels(inbound.channel).inc()
                metrics.inbound.labels(inbound.channel, "duplicate").inc()
                return IntakeOutcome(texts=tuple(_stored_texts(read.stored_reply)), duplicate=True)
            if not read.locked:
                # The first delivery is still being processed: it will answer (or queue the reply).
                metrics.dedupe_hits.labels(inbound.channel).inc()
                metrics.inbound.labels(inbound.channel, "in_flight").inc()
                return IntakeOutcome(duplicate=True)
            try:
                outcome = await self._turn(inbound, read, asked, status, deadline)
            except Exception:
                await self.redis.delete(keys.inflight(tenant, ext))
                raise
            if outcome is not None:
                return outcome
        await self.redis.delete(keys.inflight(tenant, ext))
        raise RuntimeError(
            f"conversation of {address} kept changing; gave up after {MAX_CONFLICT_RETRIES} tries"
        )

    def _asked(self, inbound: Inbound) -> tuple[list[str], bool]:
        """What the text alone says the turn needs: the ticket ids it mentions, and whether the
        citizen's recent tickets are wanted (a status question, a menu click)."""
        text = inbound.text
        wanted: list[str] = ticket_ids_mentioned(text, self.tenant.prefix) if text else []
        if inbound.attrs.get("thread_ticket_id"):
            wanted.append(inbound.attrs["thread_ticket_id"])
        command = parse_command(text, self.tenant.prefix) if text else None
        status = command is not None and command.command is Command.STATUS
        return wanted, status or bool(inbound.attrs.get("click_key"))

    async def _turn(
        self, inbound: Inbound, read: TurnRead, asked: list[str], status: bool, deadline: float
    ) -> IntakeOutcome | None:
        version = read.version
        state = ConversationState.from_json(read.state)
        now = self.clock()
        context, loaded = await self._context(inbound, state, read.tickets, asked, status)
        state, context, thread = self.actions.thread(inbound, state, context, loaded)
        new_state, actions = step(
            state, inbound, datetime.fromtimestamp(now, UTC), self.engine_settings, context
        )
        tr = self.actions.translate(inbound, new_state, actions, now, loaded)
        if state.mode is Mode.HANDED_TO_HUMAN and new_state.mode is not Mode.HANDED_TO_HUMAN:
            # The citizen went back to the bot (继续): they no longer wait on the staff queue.
            tr.zsets.append((keys.handoff_queue(inbound.tenant), inbound.sender, None))
        if thread is not None:
            self.actions.threaded_changes(tr, thread, f"citizen:{inbound.sender}")
        tr.outbox += await self.webhooks.outbounds(
            inbound.tenant,
            inbound.external_id,
            new_ticket=tr.new_ticket,
            changes=tr.changes,
            tickets=loaded,
            actor=f"citizen:{inbound.sender}",
            now=now,
        )
        inline_ok = inbound.channel in INLINE_VARIANT and deadline > 0
        inline = inline_ok and time.monotonic() < deadline - INLINE_MARGIN_S
        texts: list[str] = []
        if inline:
            texts = [self._render_inline(inbound.channel, r) for r in tr.replies]
        else:
            tr.outbox[:0] = self._reply_outbounds(inbound, tr, new_state)
        stored_reply = json.dumps(
            {"inline": texts} if inline else {"outbox": len(tr.replies)}, ensure_ascii=False
        )
        result = await self.turns.apply_turn(
            TurnWrite(
                tenant=inbound.tenant,
                address=inbound.sender,
                expected_version=version,
                new_state=new_state.to_json().replace(ENGINE_PH_JSON.encode(), STORE_PH.encode()),
                external_id=inbound.external_id,
                stored_reply=stored_reply.encode(),
                new_ticket=tr.new_ticket,
                ticket_changes=tr.changes,
                outbox=tr.outbox,
                timers_set=tr.timers_set,
                timers_cancel=tr.timers_cancel,
                address_state=tr.address_state,
                links=tr.links,
                zsets=tr.zsets,
                lists=tr.lists,
            )
        )
        if result.outcome is ApplyOutcome.CONFLICT:
            return None
        if result.outcome is ApplyOutcome.DUPLICATE:
            metrics.dedupe_hits.labels(inbound.channel).inc()
            return IntakeOutcome(texts=tuple(_stored_texts(result.reply or b"")), duplicate=True)
        _child(metrics.inbound, inbound.channel, "ticket" if result.ticket_id else "turn").inc()
        if result.ticket_id:
            if self.wait_aof:
                # Acknowledge the new ticket only once the server's AOF is fsynced (config
                # redis.wait_aof): the citizen never holds an id a power cut could take back.
                await self.redis.execute_command("WAITAOF", 1, 0, 2000)  # type: ignore[no-untyped-call]
            log.info("ticket filed", extra={"ticket": result.ticket_id, "channel": inbound.channel})
        return IntakeOutcome(texts=tuple(_stored_texts(result.reply or b"")))

    # -- context ---------------------------------------------------------------------------------

    async def _context(
        self,
        inbound: Inbound,
        state: ConversationState,
        read: dict[str, Ticket | None],
        asked: list[str],
        status: bool,
    ) -> tuple[TurnContext, dict[str, Ticket]]:
        """Ticket summaries the engine may need: ids in the text, a status question (all of the
        citizen's recent tickets), the open ticket a message may supplement, a pending survey or
        staff question. They came with the turn's read (``read``); an id the script did not look
        up (a state it decoded otherwise) costs one more read. A citizen with no tickets costs
        no ticket read at all."""
        wanted = list(asked)
        if status:
            wanted += [t.id for t in state.tickets[-self.engine_settings.status_list_limit * 2 :]]
        for extra in (state.current_ticket, state.pending_survey):
            if extra:
                wanted.append(extra)
        if state.pending_question:
            wanted.append(state.pending_question.ticket_id)
        if state.comment_for:
            wanted.append(state.comment_for[0])
        ids = [i for i in dict.fromkeys(wanted) if i and i != STORE_PH and i != ENGINE_PH]
        code = new_query_code()
        if not ids:
            return TurnContext(new_query_code=code), {}
        missing = [i for i in ids if i not in read]
        if missing:
            read = {**read, **{t.id: t for t in await self.store.get_tickets(inbound.tenant, missing)}}
        tickets = [t for t in (read.get(i) for i in ids) if t is not None]
        context = TurnContext(tickets=tuple(summary(t) for t in tickets), new_query_code=code)
        return context, {t.id: t for t in tickets}

    # -- replies ---------------------------------------------------------------------------------

    def _render_inline(self, channel: str, reply: Reply) -> str:
        params = {k: swap(v) for k, v in reply.params.items()}
        return self.catalogue.render(reply.key, params, reply.language, INLINE_VARIANT[channel])

    def _reply_outbounds(self, inbound: Inbound, tr: Translation, state: ConversationState) -> list[Outbound]:
        ticket_id = STORE_PH if tr.new_ticket else (state.current_ticket or None)
        attrs: dict[str, str] = {}
        if inbound.channel == "email":
            # Thread our answer under the citizen's mail (RFC 5322 §3.6.4).
            message_id = inbound.attrs.get("message_id", "")
            refs = " ".join(x for x in (inbound.attrs.get("references", ""), message_id) if x)
            attrs = {
                "in_reply_to": message_id,
                "references": refs,
                "subject": inbound.attrs.get("subject", ""),
            }
            if inbound.attrs.get("ack_suppressed") == "1" or inbound.attrs.get("no_auto_reply") == "1":
                return []
        replies = list(tr.replies)
        if inbound.channel == "email" and len(replies) > 1:
            # Email is not chatty: what the engine says in one turn goes out as one mail, the
            # first reply's subject over all the parts (the renderer joins them).
            bundle = [
                {"key": r.key, "params": {k: swap(v) for k, v in r.params.items()}} for r in replies[1:]
            ]
            attrs = {**attrs, "bundle": json.dumps(bundle, ensure_ascii=False)}
            replies = replies[:1]
        out = []
        for i, reply in enumerate(replies):
            out.append(
                Outbound(
                    id=f"reply:{inbound.channel}:{inbound.external_id}:{i}",
                    tenant=inbound.tenant,
                    recipient=inbound.sender,
                    purpose=reply.purpose,
                    key=reply.key,
                    params={k: swap(v) for k, v in reply.params.items()},
                    ticket_id=swap(ticket_id) if ticket_id else None,
                    language=reply.language,
                    attrs=attrs,
                )
            )
        return out


def _stored_texts(stored: bytes) -> list[str]:
    try:
        data = json.loads(stored)
    except ValueError:
        return []
    texts = data.get("inline") if isinstance(data, dict) else None
    return [str(t) for t in texts] if isinstance(texts, list) else []
