"""The one-round-trip turn read (store/scripts/read_turn.lua) on the real Valkey: state, version,
replay mark, the in-flight lock, and the tickets the state itself names, decoded inside the script
from the JSON that conversation.state writes."""

from __future__ import annotations

import redis.asyncio as aioredis

from conversation.state import ConversationState, FiledTicket, StaffQuestion
from store import keys
from store.apply import TICKET_ID_PLACEHOLDER
from store.casestore import CaseStore
from store.model import NewTicket
from store.turns import Turns, TurnWrite

ADDR = "wechat:wxsandbox000000000:o_read"


async def _file(store: CaseStore, text: str) -> str:
    return await store.create_ticket("default", NewTicket(channel="wechat", citizen=ADDR, description=text))


async def _save(turns: Turns, state: ConversationState, ext: str, version: int = 0) -> None:
    write = TurnWrite("default", ADDR, version, state.to_json(), ext, b'{"inline":["ok"]}')
    assert (await turns.apply_turn(write)).version == version + 1


async def test_fresh_conversation_takes_the_lock_once(store: CaseStore) -> None:
    turns = Turns(store)
    first = await turns.read_turn("default", ADDR, "m1", lock_token="a")
    assert (first.version, first.state, first.stored_reply, first.locked) == (0, None, None, True)
    assert first.tickets == {}
    # A retry of the same message while the first is processed: the lock is taken.
    retry = await turns.read_turn("default", ADDR, "m1", lock_token="b")
    assert (retry.locked, retry.stored_reply) == (False, None)
    # Without a token (a re-read after a version conflict) no lock is asked for.
    reread = await turns.read_turn("default", ADDR, "m1")
    assert reread.locked


async def test_replay_returns_the_stored_reply_and_takes_no_lock(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    turns = Turns(store)
    await _save(turns, ConversationState(channel="wechat"), "m1")
    replay = await turns.read_turn("default", ADDR, "m1", lock_token="x")
    assert replay.stored_reply == b'{"inline":["ok"]}'
    assert replay.version == 1 and replay.tickets == {}
    assert await redis_client.exists(keys.inflight("default", "m1")) == 0


async def test_tickets_named_by_the_state_come_with_the_read(store: CaseStore) -> None:
    turns = Turns(store)
    old, survey, asked, current, comment = [await _file(store, f"t{i}") for i in range(5)]
    state = ConversationState(
        tickets=(FiledTicket(old, "1111", 1.0), FiledTicket(current, "2222", 2.0)),
        current_ticket=current,
        pending_survey=survey,
        pending_question=StaffQuestion(asked, "which floor?"),
        comment_for=(comment, 2),
        channel="wechat",
    )
    await _save(turns, state, "m1")
    read = await turns.read_turn("default", ADDR, "m2", lock_token="t")
    assert read.locked and ConversationState.from_json(read.state) == state
    # The state's own tickets, without the older filed one (no status question asked).
    assert list(read.tickets) == [current, survey, asked, comment]
    assert all(t is not None and t.id == i for i, t in read.tickets.items())
    # A status question: the recent filed tickets too, oldest first; ids the caller asks for lead.
    status = await turns.read_turn("default", ADDR, "m3", ticket_ids=["SN-000000-0000-0"], recent_tickets=2)
    assert list(status.tickets) == ["SN-000000-0000-0", old, current, survey, asked, comment]
    assert status.tickets["SN-000000-0000-0"] is None  # no such ticket
    only_last = await turns.read_turn("default", ADDR, "m4", recent_tickets=1)
    assert old not in only_last.tickets


async def test_placeholders_and_damaged_states_read_no_ticket(
    store: CaseStore, redis_client: aioredis.Redis
) -> None:
    turns = Turns(store)
    real = await _file(store, "t")
    await _save(turns, ConversationState(current_ticket=TICKET_ID_PLACEHOLDER, pending_survey=real), "m1")
    read = await turns.read_turn("default", ADDR, "m2", never=[TICKET_ID_PLACEHOLDER])
    assert list(read.tickets) == [real]
    await redis_client.hset(keys.conversation("default", ADDR), "state", b'{"current_ticket": "SN-')
    damaged = await turns.read_turn("default", ADDR, "m3", ticket_ids=[real])
    assert damaged.state == b'{"current_ticket": "SN-' and list(damaged.tickets) == [real]
