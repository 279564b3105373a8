"""Every Redis key Sulai uses, and nowhere else (STYLE.md 7).

Layout: ``sulai:{<tenant>}:v1:<kind>:…``. The braces are a Redis Cluster hash tag: all keys of a
tenant share a slot, so any of them can change together in one MULTI or Lua script. ``v1`` lets a
future layout migrate side by side.

Each builder states its type and lifetime. Keys without a TTL say why: they are the case record
(tickets, their logs and indexes are kept for the platform's archive) or bounded by design.
Provider ids (openids, phone numbers, message ids) never form a bare key: they always sit under a
tenant prefix and a kind.
"""

from __future__ import annotations

VERSION = "v1"

# Lifetimes in seconds.
IDEMPOTENCY_TTL = 7 * 24 * 3600  # ≥ 48 h asked by DESIGN.md; a week covers IMAP re-fetch after an outage
NONCE_TTL = 600  # WeChat replay window ±5 min, doubled
CONVERSATION_TTL = 30 * 24 * 3600  # a conversation idle a month starts afresh; tickets keep the record
SENT_MARK_TTL = 30 * 24 * 3600  # outbound ids already sent: longer than any retry schedule
DAY_COUNTER_TTL = 400 * 24 * 3600  # per-day statistics kept over a year for the annual review
RATE_WINDOW_TTL = 3600


def _safe(part: str) -> str:
    """Key parts come from provider input; braces would break the hash tag."""
    if "{" in part or "}" in part:
        raise ValueError(f"key part may not contain braces: {part!r}")
    return part


def prefix(tenant: str) -> str:
    return f"sulai:{{{_safe(tenant)}}}:{VERSION}"


# --- case record (no TTL: the archive of the platform) -----------------------------------------


def ticket(tenant: str, ticket_id: str) -> str:
    """HASH: the ticket's fields (JSON values for structured ones)."""
    return f"{prefix(tenant)}:ticket:{_safe(ticket_id)}"


def ticket_events(tenant: str, ticket_id: str) -> str:
    """LIST of JSON TicketEvents, oldest first: the audit log and the staff timeline."""
    return f"{prefix(tenant)}:ticket:{_safe(ticket_id)}:events"


def ticket_seq(tenant: str, day: str) -> str:
    """STRING counter: the daily sequence of ticket ids (day = YYMMDD). TTL 2 days: after the
    day ends nobody draws from it again."""
    return f"{prefix(tenant)}:seq:{_safe(day)}"


def index_status(tenant: str, status: str) -> str:
    """ZSET ticket id -> created-at: tickets by status."""
    return f"{prefix(tenant)}:idx:status:{_safe(status)}"


def index_unit(tenant: str, unit: str) -> str:
    """ZSET ticket id -> created-at: tickets currently assigned to a unit (department)."""
    return f"{prefix(tenant)}:idx:unit:{_safe(unit)}"


def index_citizen(tenant: str, address: str) -> str:
    """ZSET ticket id -> created-at: tickets of one citizen address."""
    return f"{prefix(tenant)}:idx:citizen:{_safe(address)}"


def index_created(tenant: str) -> str:
    """ZSET ticket id -> created-at: every ticket, for time-range listing."""
    return f"{prefix(tenant)}:idx:created"


def counters_day(tenant: str, day: str) -> str:
    """HASH field -> count for one local day (YYYYMMDD): received, received:<channel>, resolved …
    TTL DAY_COUNTER_TTL."""
    return f"{prefix(tenant)}:stats:day:{_safe(day)}"


# --- dialogue ------------------------------------------------------------------------------------


def conversation(tenant: str, address: str) -> str:
    """HASH {version, state(JSON)}: one citizen address's conversation. TTL CONVERSATION_TTL,
    refreshed on every turn."""
    return f"{prefix(tenant)}:conv:{_safe(address)}"


def idempotency(tenant: str, external_id: str) -> str:
    """STRING: the stored reply (JSON) of an already applied inbound. TTL IDEMPOTENCY_TTL."""
    return f"{prefix(tenant)}:idem:{_safe(external_id)}"


def inflight(tenant: str, external_id: str) -> str:
    """STRING: an inbound being processed right now (lock, short TTL), so a provider's retry
    arriving meanwhile neither runs the turn twice nor answers twice."""
    return f"{prefix(tenant)}:inflight:{_safe(external_id)}"


# --- outbox --------------------------------------------------------------------------------------


def outbox(tenant: str) -> str:
    """STREAM of outbound entries; consumer group ``dispatch``. Trimmed by the dispatcher."""
    return f"{prefix(tenant)}:outbox"


def outbox_dead(tenant: str) -> str:
    """STREAM of outbound entries that failed permanently or too often: shown to staff.
    Capped (MAXLEN) instead of a TTL, so nothing silently vanishes while it is being looked at."""
    return f"{prefix(tenant)}:outbox:dead"


def outbox_delayed(tenant: str) -> str:
    """ZSET entry JSON -> due time: retries waiting for their backoff and pushes in quiet hours.
    Bounded by the outbox itself: members leave when moved back to the stream."""
    return f"{prefix(tenant)}:outbox:delayed"


def outbound_record(tenant: str, outbound_id: str) -> str:
    """HASH: status, provider id, attempts, path, last error of one outbound. TTL SENT_MARK_TTL.
    ``sent`` set means never send again."""
    return f"{prefix(tenant)}:out:{_safe(outbound_id)}"


def provider_message(tenant: str, channel: str, provider_id: str) -> str:
    """STRING provider message id -> outbound id, to apply delivery reports. TTL SENT_MARK_TTL."""
    return f"{prefix(tenant)}:pmsg:{_safe(channel)}:{_safe(provider_id)}"


# --- timers ---------------------------------------------------------------------------------------


def timers(tenant: str) -> str:
    """ZSET timer id -> due time (unix s). Members are removed when fired or cancelled."""
    return f"{prefix(tenant)}:timers"


def timer_payload(tenant: str) -> str:
    """HASH timer id -> JSON payload, removed together with the ZSET member."""
    return f"{prefix(tenant)}:timers:payload"


# --- channel state ----------------------------------------------------------------------------------


def address_state(tenant: str, address: str) -> str:
    """HASH: per-address channel facts: unreachable, opted_out, last_inbound (WeChat 48 h window),
    window_used (quota), last_location, entry_point, subscribed templates. TTL CONVERSATION_TTL
    refreshed on change; opt-outs are re-written on every inbound so they outlive idle periods."""
    return f"{prefix(tenant)}:addr:{_safe(address)}"


def citizen_addresses(tenant: str, address: str) -> str:
    """SET: the other addresses known for the citizen behind ``address`` (phone given in WeChat,
    email given by SMS …), for fallback delivery. TTL CONVERSATION_TTL."""
    return f"{prefix(tenant)}:links:{_safe(address)}"


def nonce(tenant: str, account: str, value: str) -> str:
    """STRING: a webhook nonce already seen (replay guard). TTL NONCE_TTL."""
    return f"{prefix(tenant)}:nonce:{_safe(account)}:{_safe(value)}"


def rate(tenant: str, name: str, subject: str, window: int) -> str:
    """STRING counter for one fixed window of a rate limit. TTL ≥ the window."""
    return f"{prefix(tenant)}:rate:{_safe(name)}:{_safe(subject)}:{window}"


def access_token(tenant: str, appid: str) -> str:
    """STRING: a provider access token shared by all processes. TTL = its expiry."""
    return f"{prefix(tenant)}:token:{_safe(appid)}"


def access_token_lock(tenant: str, appid: str) -> str:
    """STRING lock (SET NX PX) so only one process refreshes the token."""
    return f"{prefix(tenant)}:token:{_safe(appid)}:lock"


def email_thread(tenant: str, message_id: str) -> str:
    """STRING: one of our outgoing Message-IDs -> ticket id, for threading replies. No TTL: a
    citizen may answer a year later; one short key per mail sent."""
    return f"{prefix(tenant)}:mailthread:{_safe(message_id)}"


def imap_state(tenant: str, mailbox: str) -> str:
    """HASH {uidvalidity, last_uid} per polled folder. No TTL: losing it re-fetches everything."""
    return f"{prefix(tenant)}:imap:{_safe(mailbox)}"


# --- staff ---------------------------------------------------------------------------------------------


def staff_tokens(tenant: str) -> str:
    """HASH sha256(token) -> staff id. No TTL: revoked explicitly."""
    return f"{prefix(tenant)}:staff:tokens"


def staff(tenant: str, staff_id: str) -> str:
    """HASH: a staff member (name, role, unit, created, revoked). No TTL: the audit trail names them."""
    return f"{prefix(tenant)}:staff:{_safe(staff_id)}"


def staff_index(tenant: str) -> str:
    """ZSET staff id -> created-at."""
    return f"{prefix(tenant)}:staff:all"


def units(tenant: str) -> str:
    """HASH unit id -> JSON {name, …}. No TTL: configuration data."""
    return f"{prefix(tenant)}:units"


def callback_list(tenant: str) -> str:
    """ZSET ticket id -> time: tickets closed without a rating, to be called back (回访)."""
    return f"{prefix(tenant)}:callbacks"


def supervision_queue(tenant: str) -> str:
    """ZSET ticket id -> time: tickets flagged for supervision after too many re-dispatches."""
    return f"{prefix(tenant)}:supervision"


def webhooks(tenant: str) -> str:
    """HASH subscription id -> JSON {url, secret, events}. No TTL: configuration data."""
    return f"{prefix(tenant)}:webhooks"


def rate_tat(tenant: str, name: str, subject: str) -> str:
    """STRING: the "theoretical arrival time" (µs, server clock) of a GCRA rate limit, e.g. the
    SMS send rate per number. TTL = until the bucket is full again (+1 s)."""
    return f"{prefix(tenant)}:ratetat:{_safe(name)}:{_safe(subject)}"


def index_entered_by(tenant: str, staff_id: str) -> str:
    """ZSET ticket id -> created-at: tickets a staff member entered on a citizen's behalf (grid
    workers see these). No TTL: part of the case record, like the other indexes."""
    return f"{prefix(tenant)}:idx:enteredby:{_safe(staff_id)}"


def index_unit_open(tenant: str, unit: str) -> str:
    """ZSET ticket id -> created-at: a unit's open work (tickets with that unit in status assigned
    or replied), kept by the apply script from each written ticket's final status and unit. It
    is the per-unit queue and ``assigned_now``; :func:`index_unit` keeps every ticket the unit
    owns (closed ones too) for the unit's own listing. No TTL: members leave as work finishes."""
    return f"{prefix(tenant)}:idx:unitopen:{_safe(unit)}"


def index_deadline(tenant: str) -> str:
    """ZSET ticket id -> reply deadline (unix s): open tickets that have a reply deadline, kept by
    the apply script, so counting the overdue ones is one ZCOUNT. No TTL: members leave when the
    ticket leaves the open statuses."""
    return f"{prefix(tenant)}:idx:deadline"


# Per-ticket email references: long enough for a slow ticket and its survey months later.
EMAIL_REFS_TTL = 400 * 24 * 3600
EMAIL_REFS_MAX = 20


def email_ticket_refs(tenant: str, ticket_id: str) -> str:
    """LIST of Message-IDs (no brackets), oldest first: the citizen's mails and ours about one
    ticket, so every mail we send about it carries In-Reply-To/References. Capped at
    EMAIL_REFS_MAX (mail clients keep the tail of References too); TTL EMAIL_REFS_TTL, refreshed
    on each mail."""
    return f"{prefix(tenant)}:mailrefs:{_safe(ticket_id)}"


HANDOFF_LOG_MAX = 50  # a hand-off log keeps the last this many entries


def handoff_queue(tenant: str) -> str:
    """ZSET citizen address -> unix time of the first request: citizens handed to a human and
    waiting for staff (added by the conversation turn with ZADD NX, so re-asking keeps the
    original time). No TTL: bounded by design, members leave when staff close the hand-off."""
    return f"{prefix(tenant)}:handoffs"


def handoff_log(tenant: str, address: str) -> str:
    """LIST of JSON entries {at, reason, text, ticket_id, by}, oldest first: what a handed-over
    citizen said and what staff answered. Capped at HANDOFF_LOG_MAX; TTL CONVERSATION_TTL,
    refreshed on each entry."""
    return f"{prefix(tenant)}:handofflog:{_safe(address)}"
