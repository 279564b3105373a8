"""store.mail_state on the real Valkey: thread map, IMAP UID state, ack rate limit, unreachable
marks; ends with the exact keys left behind and their TTLs (STYLE.md 8)."""

from __future__ import annotations

import redis.asyncio as aioredis

from channels.email.loops import delivery_updates
from channels.email.parser import analyse
from store import keys
from store.mail_state import ImapFolderState, MailState
from tests.channels.email_kit import OUR_MESSAGE_ID, email_settings, fixture_bytes


async def test_mail_state_round_trip_and_keys(redis_client: aioredis.Redis) -> None:
    state = MailState(redis_client, "default")
    await state.remember_thread(f"<{OUR_MESSAGE_ID}>", "SN-261125-0042-1")
    assert await state.ticket_for(["unknown@x", OUR_MESSAGE_ID]) == "SN-261125-0042-1"
    assert await state.ticket_for(["unknown@x", "{brace}@x", ""]) is None
    assert await state.ticket_for([]) is None

    assert await state.load_imap("inbox-1/INBOX") is None
    await state.save_imap("inbox-1/INBOX", 1700000000, 42)
    assert await state.load_imap("inbox-1/INBOX") == ImapFolderState(1700000000, 42)

    now = 1_764_050_400.0
    allowed = [await state.allow_ack("ZhangWei@example.com", limit=5, now=now) for _ in range(7)]
    assert allowed == [True] * 5 + [False] * 2
    assert await state.allow_ack("zhangwei@example.com", limit=5, now=now + 3600)  # next hour

    # A permanent DSN marks the failed address unreachable.
    [update] = delivery_updates(analyse(fixture_bytes("dsn_bounce_permanent"), email_settings()).attrs)
    assert update.permanent_failure and update.address == "mailto:nobody@example.net"
    await state.mark_unreachable(update.address, update.error_code)
    assert await state.is_unreachable("mailto:nobody@example.net")
    assert not await state.is_unreachable("mailto:someone@example.net")

    window = int(now // 3600)
    expected = {
        keys.email_thread("default", OUR_MESSAGE_ID): -1,
        keys.imap_state("default", "inbox-1/INBOX"): -1,
        keys.rate("default", "email-ack", "zhangwei@example.com", window): 3660,
        keys.rate("default", "email-ack", "zhangwei@example.com", window + 1): 3660,
        keys.address_state("default", "mailto:nobody@example.net"): keys.CONVERSATION_TTL,
    }
    found = {
        (k.decode() if isinstance(k, bytes) else k): await redis_client.ttl(k)
        for k in await redis_client.keys("*")
    }
    assert set(found) == set(expected)
    for key, ttl in expected.items():
        assert (found[key] == -1) if ttl == -1 else (ttl - 5 <= found[key] <= ttl), key

    await state.clear_unreachable("mailto:nobody@example.net")
    assert not await state.is_unreachable("mailto:nobody@example.net")
