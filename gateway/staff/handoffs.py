"""Citizens handed to a human (转人工): the staff side of ``HandToHuman``.

The conversation turn (gateway/intake.py) puts a citizen who asks for a human, or accepts one
after failing a question, on the tenant's hand-off queue (``keys.handoff_queue``) and logs what
they say while waiting (``keys.handoff_log``). Here staff list the waiting citizens, answer one
(an Outbound through the outbox, logged with the rest) and close the hand-off: the citizen leaves
the queue and their conversation goes back to the bot, in the same store write.

The ``{address}`` path segment is the citizen's address, URL-encoded (``wechat%3Awx…%3Ao…``).
An address that is not waiting answers 404, like an unknown one.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any

from channels.base import Outbound, Purpose, address_channel
from conversation.state import ConversationState, Mode
from gateway.staff import idempotency, pushes, queries
from gateway.staff.context import StaffContext
from gateway.staff.errors import ApiError, Field, not_found
from gateway.staff.masking import mask_address, must_mask
from gateway.staff.queries import Plan
from gateway.staff.routing import Call, Result
from store import keys
from store.apply import Write, WriteConflict
from store.model import OPEN_STATUSES

REPLY_KEY = "handoff.reply"  # catalogue key, {text}
REPLY_BODY = (Field("text", required=True, min_length=1, max_length=2000, description="the answer"),)
LIST_QUERY = (Field("limit", kind="integer", minimum=1, maximum=200),)
DEFAULT_LIMIT = 50
LAST_MESSAGES = 10  # the listing shows this many latest entries of the current wait
RECENT_TICKETS = 20  # of a citizen's tickets, the newest this many are checked for open ones


def _s(v: bytes | str) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else v


def _address(call: Call) -> str:
    address = call.path["address"]  # aiohttp has percent-decoded it
    if not address or "{" in address or "}" in address:  # no key can hold it: nobody waits there
        raise not_found("hand-off")
    return address


async def _waiting_since(ctx: StaffContext, address: str) -> float:
    since = await ctx.redis.zscore(keys.handoff_queue(ctx.tid), address)
    if since is None:
        raise not_found("hand-off")
    return float(since)


def _log_item(now: float, by: str, reason: str, text: str = "") -> str:
    entry = {"at": now, "by": by, "reason": reason, "text": text, "ticket_id": ""}
    return json.dumps(entry, ensure_ascii=False)


def _log_op(ctx: StaffContext, address: str, item: str) -> tuple[str, str, int, int]:
    return keys.handoff_log(ctx.tid, address), item, keys.HANDOFF_LOG_MAX, keys.CONVERSATION_TTL


# --- list -----------------------------------------------------------------------------------------


async def list_handoffs(ctx: StaffContext, call: Call) -> Result:
    """Waiting citizens, longest-waiting first, each with what they said in this wait."""
    limit = int(call.query.get("limit") or DEFAULT_LIMIT)
    rows: Any = await ctx.redis.zrange(keys.handoff_queue(ctx.tid), 0, limit - 1, withscores=True)
    waiting = [(_s(a), float(score)) for a, score in rows]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for address, _ in waiting:
            pipe.lrange(keys.handoff_log(ctx.tid, address), -keys.HANDOFF_LOG_MAX, -1)
            pipe.hget(keys.address_state(ctx.tid, address), "handoff")
            pipe.zrange(keys.index_citizen(ctx.tid, address), -RECENT_TICKETS, -1)
        found = await pipe.execute()
    ticket_ids = sorted({_s(t) for i in range(len(waiting)) for t in found[3 * i + 2]})
    open_ids = {t.id for t in await ctx.cases.get_tickets(ctx.tid, ticket_ids) if t.status in OPEN_STATUSES}
    masked = must_mask(call.staff.role, ctx.unmasked_roles)
    items = []
    for i, (address, since) in enumerate(waiting):
        log, last_reason, tickets = found[3 * i : 3 * i + 3]
        entries = [json.loads(x) for x in log]
        current = [e for e in entries if float(e.get("at", 0)) >= since]
        asked = [e for e in current if e.get("by") == "citizen" and e.get("reason") != "follow_up"]
        reason = asked[0]["reason"] if asked else _s(last_reason or b"")
        items.append(
            {
                "address": mask_address(address) if masked else address,
                "channel": address_channel(address),
                "since": since,
                "reason": reason,
                "messages": [
                    {k: e.get(k, "") for k in ("at", "by", "reason", "text")}
                    for e in current[-LAST_MESSAGES:]
                ],
                "open_tickets": [t for t in (_s(x) for x in tickets) if t in open_ids],
            }
        )
    return 200, {"items": items}


# --- reply and close ------------------------------------------------------------------------------


async def _commit(ctx: StaffContext, call: Call, write: Write, now: float, payload: Any) -> Result:
    """Run ``write`` with the Idempotency-Key mark (when given) and answer ``payload``."""
    body = ""
    if call.idem is not None:
        stored, body = queries._stored(call.idem.fingerprint, 200, payload)
        write.idempotency = (call.idem.external_id, stored)
    result = await ctx.cases.applier.run(write, now)
    if call.idem is None:
        return 200, payload
    if result.duplicate_reply is not None:
        return idempotency.replay(result.duplicate_reply, call.idem.fingerprint)
    return idempotency.response(200, body)


async def reply(ctx: StaffContext, call: Call) -> Result:
    """Send the staff member's answer to the waiting citizen over their channel, and log it."""
    address = _address(call)
    await _waiting_since(ctx, address)
    text = call.body["text"]
    now = ctx.clock()
    raw_state = await ctx.redis.hget(keys.conversation(ctx.tid, address), "state")
    language = ConversationState.from_json(raw_state).language or "zh-CN"
    when = await pushes.push_time(ctx.redis, ctx.tid, address, now, ctx.tenant.zone, ctx.quiet_window)
    outbound = Outbound(
        id=f"handoff:{secrets.token_hex(8)}", tenant=ctx.tid, recipient=address,
        purpose=Purpose.STAFF_REPLY, key=REPLY_KEY, params={"text": text}, not_before=when,
        language=language,
    )  # fmt: skip
    write = Write(
        tenant=ctx.tid,
        actor=call.staff.actor,
        outbox=[outbound],
        lists=[_log_op(ctx, address, _log_item(now, call.staff.actor, "staff_reply", text))],
    )
    shown = mask_address(address) if must_mask(call.staff.role, ctx.unmasked_roles) else address
    return await _commit(ctx, call, write, now, {"address": shown, "outbound_id": outbound.id, "at": now})


def _back_to_bot(state: ConversationState) -> ConversationState:
    """The draft the citizen was filling in picks up where it stopped; otherwise a fresh start."""
    if state.mode is not Mode.HANDED_TO_HUMAN:
        return state  # the citizen already went back ("继续")
    return replace(state, mode=Mode.COLLECTING if state.draft_id else Mode.IDLE)


async def close(ctx: StaffContext, call: Call) -> Result:
    """Take the citizen off the queue and give their conversation back to the bot, in one write."""
    address = _address(call)
    await _waiting_since(ctx, address)
    shown = mask_address(address) if must_mask(call.staff.role, ctx.unmasked_roles) else address
    plan = Plan(conversation=_back_to_bot)
    for _ in range(queries.MAX_RETRIES):
        now = ctx.clock()
        read = await queries._read(ctx, [], address)
        conversation = queries._conversation(plan, read, address)
        assert conversation is not None
        mode = ConversationState.from_json(conversation[2]).mode
        write = Write(
            tenant=ctx.tid,
            actor=call.staff.actor,
            zsets=[(keys.handoff_queue(ctx.tid), address, None)],
            lists=[_log_op(ctx, address, _log_item(now, call.staff.actor, "closed"))],
            address_state={address: {"handoff_closed_at": repr(now)}},
            conversation=conversation,
        )
        try:
            return await _commit(
                ctx, call, write, now, {"address": shown, "closed_at": now, "mode": mode.value}
            )
        except WriteConflict:
            continue  # the citizen wrote meanwhile: patch their new state
    raise ApiError(503, "busy", "the conversation kept changing; try again")
