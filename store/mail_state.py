"""Redis state of the email channel: the thread map, IMAP UID state, acknowledgement rate limits
and unreachable marks from bounces.

- Thread map (``keys.email_thread``): each Message-ID we send -> its ticket id, so a reply that
  names it in In-Reply-To/References threads to the ticket even with the subject rewritten.
- Ticket references (``keys.email_ticket_refs``): the reverse, per ticket the recent Message-IDs
  of the citizen's mails and ours, oldest first, so a status push (which answers no particular
  mail) still carries In-Reply-To/References and lands in the citizen's thread.
- IMAP state (``keys.imap_state``): (UIDVALIDITY, last processed UID) per mailbox folder. The
  poller advances it only after a message was delivered and flagged, so a crash in between
  re-fetches that message (and the intake's dedupe makes the re-fetch harmless).
- Acknowledgement limit (``keys.rate``): at most N acknowledgements per sender and fixed hour,
  so two auto-responders that slipped past the header checks cannot loop for long.
- Unreachable (``keys.address_state``, fields ``unreachable``/``unreachable_why``): set from a permanent DSN; the
  dispatcher then tries the citizen's other addresses.

Message-IDs are stored without angle brackets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from store import keys, mux

ACK_RATE_NAME = "email-ack"

# Thread map entry + append the ids the ticket's references do not hold yet, capped, TTL refreshed.
_REMEMBER = """
redis.call('SET', KEYS[1], ARGV[1])
local have = {}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do have[m] = true end
for i = 4, #ARGV do
  if not have[ARGV[i]] then redis.call('RPUSH', KEYS[2], ARGV[i]); have[ARGV[i]] = true end
end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class ImapFolderState:
    uidvalidity: int
    last_uid: int


def _usable(message_id: str) -> str | None:
    mid = message_id.strip().strip("<>").strip()
    # Ids come from citizens' headers: a brace would break the key's hash tag, and none of ours has one.
    if not mid or "{" in mid or "}" in mid or len(mid) > 500:
        return None
    return mid


# KEYS: address state, ack counter (ARGV[1] = 1 to count, ARGV[2] = its TTL). Returns the count.
_NOTE_MAIL = """
redis.call('HDEL', KEYS[1], 'unreachable', 'unreachable_why')
if ARGV[1] == '1' then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return n
end
return 0
"""


class MailState:
    """The email channel's Redis state for one tenant."""

    def __init__(self, redis: aioredis.Redis, tenant: str = "default") -> None:
        self.redis = redis
        self.tenant = tenant
        self._remember = redis.register_script(_REMEMBER)
        # Every citizen mail passes here: a script on the shared connection (store/mux.py).
        self._note_mail = mux.register_script(redis, _NOTE_MAIL)

    # --- threading ----------------------------------------------------------------------------

    async def remember_thread(self, message_id: str, ticket_id: str) -> None:
        """Record one of our sent Message-IDs (SendResult.provider_id) as belonging to a ticket."""
        mid = _usable(message_id)
        if mid is None:
            raise ValueError(f"not a usable Message-ID: {message_id!r}")
        await self.redis.set(keys.email_thread(self.tenant, mid), ticket_id.encode())

    async def remember_sent(self, message_id: str, ticket_id: str, earlier: Sequence[str] = ()) -> None:
        """Record a mail we sent about ``ticket_id``: its Message-ID in the thread map, and in the
        ticket's references after ``earlier`` (the ids it answered: the citizen's mail and its
        References), each id once, in first-seen order. One script call."""
        mid = _usable(message_id)
        if mid is None:
            raise ValueError(f"not a usable Message-ID: {message_id!r}")
        chain = [m for m in (_usable(x) for x in earlier) if m is not None and m != mid]
        await self._remember(
            keys=[keys.email_thread(self.tenant, mid), keys.email_ticket_refs(self.tenant, ticket_id)],
            args=[ticket_id, keys.EMAIL_REFS_MAX, keys.EMAIL_REFS_TTL, *chain[-keys.EMAIL_REFS_MAX :], mid],
        )

    async def ticket_refs(self, ticket_id: str) -> list[str]:
        """The ticket's recent Message-IDs (citizen's and ours), oldest first; [] if none."""
        raw = await self.redis.lrange(keys.email_ticket_refs(self.tenant, ticket_id), 0, -1)
        return [bytes(v).decode() if isinstance(v, bytes | bytearray) else str(v) for v in raw]

    async def ticket_for(self, message_ids: Sequence[str]) -> str | None:
        """The ticket of the first of ``message_ids`` that is ours (order = caller's preference)."""
        usable = [m for m in (_usable(x) for x in message_ids) if m is not None][:50]
        if not usable:
            return None
        values = await self.redis.mget([keys.email_thread(self.tenant, m) for m in usable])
        for value in values:
            if value is not None:
                return bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value)
        return None

    # --- IMAP UID state -------------------------------------------------------------------------

    async def load_imap(self, mailbox: str) -> ImapFolderState | None:
        raw = await self.redis.hgetall(keys.imap_state(self.tenant, mailbox))
        if not raw:
            return None
        fields = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
        return ImapFolderState(uidvalidity=int(fields["uidvalidity"]), last_uid=int(fields["last_uid"]))

    async def save_imap(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        await self.redis.hset(
            keys.imap_state(self.tenant, mailbox),
            mapping={"uidvalidity": str(uidvalidity), "last_uid": str(last_uid)},
        )

    # --- acknowledgement rate limit -------------------------------------------------------------

    async def allow_ack(self, sender: str, limit: int = 5, window: int = 3600, now: float = 0.0) -> bool:
        """Count one acknowledgement to ``sender`` (an address) and say whether it may go out."""
        current = int((now or time.time()) // window)
        key = keys.rate(self.tenant, ACK_RATE_NAME, sender.lower(), current)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window + 60)
            count, _ = await pipe.execute()
        return int(count) <= limit

    # --- unreachable addresses ------------------------------------------------------------------

    async def mark_unreachable(self, address: str, reason: str) -> None:
        """Mark a ``mailto:`` address unreachable after a permanent delivery failure."""
        key = keys.address_state(self.tenant, address)
        async with self.redis.pipeline(transaction=True) as pipe:
            # Same fields as store.outbox.mark_unreachable, which the dispatcher reads.
            pipe.hset(key, mapping={"unreachable": "1", "unreachable_why": reason or "bounce"})
            pipe.expire(key, keys.CONVERSATION_TTL)
            await pipe.execute()

    async def is_unreachable(self, address: str) -> bool:
        value = await self.redis.hget(keys.address_state(self.tenant, address), "unreachable")
        return value is not None

    async def note_mail_from(
        self, address: str, ack_limit: int | None, window: int = 3600, now: float = 0.0
    ) -> bool:
        """A citizen's mail arrived: the address works again (clears an unreachable mark) and,
        when ``ack_limit`` is given, one acknowledgement is counted against it — both in one round
        trip. True when an acknowledgement may go out."""
        limit_key = ""
        if ack_limit is not None:
            sender = address.partition(":")[2] if address.startswith("mailto:") else address
            limit_key = keys.rate(
                self.tenant, ACK_RATE_NAME, sender.lower(), int((now or time.time()) // window)
            )
        count = await self._note_mail(
            keys=[
                keys.address_state(self.tenant, address),
                limit_key or keys.address_state(self.tenant, address),
            ],
            args=[1 if limit_key else 0, window + 60],
        )
        return ack_limit is None or int(count) <= ack_limit

    async def clear_unreachable(self, address: str) -> None:
        """A new inbound mail from the address proves it works again."""
        await self.redis.hdel(keys.address_state(self.tenant, address), "unreachable", "unreachable_why")
