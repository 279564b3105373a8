"""What one conversation turn's actions amount to in the store: a ticket to create, ticket changes,
outbox entries, timers, address facts, hand-off queue entries — and where an email reply threads.

The engine decides (conversation/); intake runs the turn (gateway/intake.py); this module only
translates the engine's actions into the one atomic write (store.apply) the turn commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from channels.base import Inbound, Outbound, tel_address
from channels.sms.phone import PhoneError, to_e164
from conversation.actions import (
    NEW_TICKET_ID,
    Action,
    AnswerStaffQuestion,
    AppendSupplement,
    CancelTimer,
    CreateTicket,
    HandToHuman,
    LinkAddress,
    RecordConsent,
    RecordRating,
    Reply,
    SetTimer,
)
from conversation.engine import TicketSummary, TurnContext
from conversation.state import ConversationState, Mode
from gateway.config import TenantSettings
from gateway.staff.survey import RatingEffects
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER, TimerSet
from store.model import (
    OPEN_STATUSES,
    AddEvent,
    ExtendField,
    NewTicket,
    SetStatus,
    Ticket,
    TicketChange,
    TicketEvent,
    TicketStatus,
)

# The engine marks a ticket filed this turn with its own placeholder; the store substitutes its own.
ENGINE_PH = NEW_TICKET_ID
ENGINE_PH_JSON = json.dumps(NEW_TICKET_ID)[1:-1]  # as it appears inside the state's JSON
STORE_PH = TICKET_ID_PLACEHOLDER


def swap(text: str) -> str:
    return text.replace(ENGINE_PH, STORE_PH)


RatingPolicy = Callable[[Ticket, int, str, str, float, bool], RatingEffects]


@dataclass
class Translation:
    """The store write one turn's actions amount to."""

    new_ticket: NewTicket | None = None
    changes: list[TicketChange] = field(default_factory=list)
    outbox: list[Outbound] = field(default_factory=list)
    timers_set: list[TimerSet] = field(default_factory=list)
    timers_cancel: list[str] = field(default_factory=list)
    address_state: dict[str, dict[str, str]] = field(default_factory=dict)
    links: dict[str, list[str]] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    zsets: list[tuple[str, str, float | None]] = field(default_factory=list)  # store.apply.Write.zsets
    lists: list[tuple[str, str, int, int]] = field(default_factory=list)  # store.apply.Write.lists


@dataclass(frozen=True)
class Thread:
    """The ticket a mail threads to, and what its reply does to it."""

    ticket_id: str
    reopen: bool
    link: bool


class TurnActions:
    """Translates a turn's actions for one tenant (its time zone, its closed-ticket policy, the
    survey's rating policy)."""

    def __init__(self, tenant: TenantSettings, rating_policy: RatingPolicy | None = None) -> None:
        self.tenant = tenant
        self.rating_policy = rating_policy
        self.zone = ZoneInfo(tenant.timezone)

    def thread(
        self, inbound: Inbound, state: ConversationState, context: TurnContext, loaded: dict[str, Ticket]
    ) -> tuple[ConversationState, TurnContext, Thread | None]:
        """A mail that threads to a ticket (our Message-ID in its references, or the ticket's
        token in the subject) belongs to that ticket, whichever ticket the conversation had open.
        A closed ticket is reopened, or a new ticket is linked to it (tenant.closed_reply).
        A draft in progress or a pending survey keeps the dialogue's own course."""
        tid = inbound.attrs.get("thread_ticket_id", "")
        ticket = loaded.get(tid) if tid and inbound.channel == "email" else None
        if ticket is None or state.mode is not Mode.IDLE or state.pending_survey == tid:
            return state, context, None
        # A typed subject token proves nothing; a reply to our own mail, or the ticket's own
        # citizen, does.
        owner = inbound.sender == ticket.citizen or inbound.sender in ticket.addresses
        if not owner and inbound.attrs.get("thread_source") != "references":
            return state, context, None
        if ticket.status in OPEN_STATUSES:
            return replace(state, current_ticket=tid), context, Thread(tid, reopen=False, link=False)
        if self.tenant.closed_reply == "reopen":
            reopened = replace(summary(ticket), status=TicketStatus.ACCEPTED)
            others = tuple(t for t in context.tickets if t.id != tid)
            context = replace(context, tickets=(*others, reopened))
            return replace(state, current_ticket=tid), context, Thread(tid, reopen=True, link=False)
        return replace(state, current_ticket=None), context, Thread(tid, reopen=False, link=True)

    @staticmethod
    def threaded_changes(tr: Translation, thread: Thread, actor: str) -> None:
        supplemented = any(
            isinstance(c, AddEvent) and c.ticket_id == thread.ticket_id and c.event.kind == "supplement"
            for c in tr.changes
        )
        if thread.reopen and supplemented:
            payload = {"reason": "the citizen replied to a closed ticket"}
            tr.changes.insert(
                0, SetStatus(thread.ticket_id, TicketStatus.ACCEPTED, actor, payload, strict=False)
            )
        if thread.link and tr.new_ticket is not None:
            tr.changes.append(ExtendField(STORE_PH, "links", (thread.ticket_id,)))
            tr.changes.append(ExtendField(thread.ticket_id, "links", (STORE_PH,)))

    def translate(
        self,
        inbound: Inbound,
        state: ConversationState,
        actions: list[Action],
        now: float,
        loaded: dict[str, Ticket],
    ) -> Translation:
        tr = Translation()
        actor = f"citizen:{inbound.sender}"
        for action in actions:
            match action:
                case Reply():
                    tr.replies.append(action)
                case CreateTicket(fields=draft):
                    addresses = [inbound.sender]
                    mobile = sms_address(draft.phone)
                    if mobile:
                        addresses.append(mobile)
                    tr.new_ticket = NewTicket(
                        channel=inbound.channel,
                        citizen=inbound.sender,
                        description=draft.description,
                        addresses=tuple(dict.fromkeys(addresses)),
                        intake_type="enterprise" if draft.intake_type == "enterprise" else "citizen",
                        company=draft.company,
                        credit_code=draft.credit_code,
                        category=draft.category,
                        location_text=draft.location,
                        latitude=draft.latitude,
                        longitude=draft.longitude,
                        phone=draft.phone,
                        name=draft.name,
                        attachments=draft.attachments,
                        entry_point=draft.entry_point or (inbound.entry_point or ""),
                        reply_deadline=self._end_of_day(draft.reply_deadline)
                        if draft.reply_deadline
                        else None,
                        language=draft.language,
                        query_code=draft.query_code,
                    )
                case AppendSupplement(ticket_id=tid, text=text, media=media):
                    tid = swap(tid)
                    if media:
                        tr.changes.append(ExtendField(tid, "attachments", tuple(media)))
                    payload: dict[str, Any] = {"text": text, "media": [m.media_id for m in media]}
                    tr.changes.append(AddEvent(tid, TicketEvent("supplement", actor, now, payload)))
                case AnswerStaffQuestion(ticket_id=tid, text=text, media=media):
                    if media:
                        tr.changes.append(ExtendField(tid, "attachments", tuple(media)))
                    payload = {"text": text, "media": [m.media_id for m in media]}
                    tr.changes.append(AddEvent(tid, TicketEvent("citizen_answer", actor, now, payload)))
                case RecordRating():
                    self._rating(tr, action, actor, now, loaded.get(action.ticket_id))
                case SetTimer(name=name, due=due, payload=extra):
                    body = {"kind": "conversation", "address": inbound.sender, "timer": name, **extra}
                    tr.timers_set.append(
                        TimerSet(self.timer_id(inbound.sender, name), due.timestamp(), swap(json.dumps(body)))
                    )
                case CancelTimer(name=name):
                    tr.timers_cancel.append(self.timer_id(inbound.sender, name))
                case HandToHuman(reason=reason, ticket_id=tid, text=text):
                    fields = {"handoff": reason, "handoff_at": repr(now)}
                    tr.address_state.setdefault(inbound.sender, {}).update(fields)
                    if tid:
                        event = TicketEvent("handoff", actor, now, {"reason": reason, "text": text})
                        tr.changes.append(AddEvent(swap(tid), event))
                    self._handoff(tr, inbound, reason, swap(tid) if tid else "", text, now)
                case RecordConsent(opt_in=opt_in):
                    tr.address_state.setdefault(inbound.sender, {})["opted_out"] = "0" if opt_in else "1"
                case LinkAddress(address=other):
                    tr.links.setdefault(inbound.sender, []).append(other)
                    tr.links.setdefault(other, []).append(inbound.sender)
        # Every inbound refreshes what channels need to know about the address (WeChat's 48-hour
        # customer-service window is counted from the citizen's last message).
        tr.address_state.setdefault(inbound.sender, {})["last_inbound"] = repr(
            inbound.received_at.timestamp()
        )
        return tr

    @staticmethod
    def _handoff(tr: Translation, inbound: Inbound, reason: str, tid: str, text: str, now: float) -> None:
        """Put the citizen in front of staff: on the tenant's hand-off queue (ZADD NX: asking
        again keeps the first request time) with their words in the hand-off log. The request
        itself ("人工") carries no text of its own: the log keeps what they typed."""
        tenant, address = inbound.tenant, inbound.sender
        tr.zsets.append((keys.handoff_queue(tenant), address, now))
        words = text or inbound.text or ""
        entry = {"at": now, "by": "citizen", "reason": reason, "text": words, "ticket_id": tid}
        item = json.dumps(entry, ensure_ascii=False)
        tr.lists.append(
            (keys.handoff_log(tenant, address), item, keys.HANDOFF_LOG_MAX, keys.CONVERSATION_TTL)
        )

    def _rating(
        self, tr: Translation, action: RecordRating, actor: str, now: float, ticket: Ticket | None
    ) -> None:
        event = TicketEvent(
            "rating", actor, now, {"rating": action.rating, "comment": action.comment, "amend": action.amend}
        )
        if self.rating_policy is None or ticket is None:
            tr.changes.append(AddEvent(action.ticket_id, event))
            return
        try:
            effects = self.rating_policy(ticket, action.rating, action.comment, actor, now, action.amend)
        except ValueError:
            # The ticket is not waiting for a rating (already rated, reopened meanwhile): keep it on file.
            tr.changes.append(AddEvent(action.ticket_id, event))
            return
        tr.changes.extend(effects.changes)
        tr.outbox.extend(effects.outbox)
        tr.timers_cancel.extend(effects.timers_cancel)

    @staticmethod
    def timer_id(address: str, name: str) -> str:
        return f"conv:{address}:{name}"

    def _end_of_day(self, day: Any) -> float:
        return datetime.combine(day, dtime(23, 59, 59), self.zone).timestamp()


def summary(t: Ticket) -> TicketSummary:
    return TicketSummary(
        id=t.id,
        status=t.status,
        unit=t.unit,
        query_code=t.query_code,
        owners=tuple(t.addresses) or (t.citizen,),
        updated_at=datetime.fromtimestamp(t.updated_at, UTC),
    )


def sms_address(phone: str) -> str | None:
    """The ``tel:`` address of a contact phone that can receive SMS (mobiles only), so status
    pushes can fall back to it; None for landlines and anything unparseable."""
    if not phone:
        return None
    try:
        e164 = to_e164(phone)
    except PhoneError:
        return None
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return tel_address(e164)
