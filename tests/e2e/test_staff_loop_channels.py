"""The whole life of a ticket, end to end, for a WeChat, an SMS and an email citizen (issue 7):
a citizen files on their own channel, a dispatcher accepts and assigns, the unit replies and
resolves, the citizen hears each change, rates it unhappy with a comment, the ticket goes back
out to a second unit, is resolved again, rated 5 and closed. The timeline shows all of it with
who did what, and the statistics count it. The kit is in test_staff_loop.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from channels.sms.settings import SANDBOX_NUMBER
from gateway.testing import TestClock as Clock  # "Test…" names would be collected by pytest
from tests.e2e.test_staff_loop import (
    MORNING,
    UNIT_A,
    UNIT_B,
    Citizen,
    Loop,
    Received,
    running_loop,
)

ANSWER = "已安排维修人员，明天上午更换灯泡"
RESOLUTION = "路灯已更换，恢复照明"
COMMENT = "路灯还是不亮，晚上还是黑的"
AGAIN = "线路老化已整体更换，经夜间查看照明正常"
Expected = tuple[str, dict[str, str]]  # (catalogue key, params) of a message the citizen gets


class Expect:
    """What the citizen has received so far, checked message by message."""

    def __init__(self, loop: Loop, citizen: Citizen, ticket_id: str) -> None:
        self.loop, self.citizen, self.ticket_id = loop, citizen, ticket_id
        self.count = len(citizen.received())  # acknowledgements that travel as messages (email)

    async def new(self, *wanted: tuple[str, dict[str, str]]) -> list[Received]:
        """Exactly ``wanted`` arrive next, in any order (one write may queue several)."""
        self.count += len(wanted)
        got = (await self.loop.pushes(self.citizen, self.count))[-len(wanted) :]
        unmatched = list(got)
        for key, params in wanted:
            match = [g for g in unmatched if self.citizen.shows(g, key, ticket_id=self.ticket_id, **params)]
            assert match, (key, params, [g.text for g in unmatched])
            unmatched.remove(match[0])
        return got

    async def say(self, text: str, answer: str, *pushes: Expected, **params: str) -> None:
        """The citizen writes ``text``; the engine answers with catalogue key ``answer`` (inline
        or by message) and ``pushes`` follow."""
        inline = await self.citizen.say(text)
        if self.citizen.inline:
            [said] = inline
            assert self.citizen.shows(Received("inline", said), answer, ticket_id=self.ticket_id, **params)
            await self.new(*pushes)
        else:
            assert inline == []
            await self.new((answer, params), *pushes)


async def whole_life(loop: Loop, citizen: Citizen) -> str:
    ticket_id = await citizen.file()
    seen = Expect(loop, citizen, ticket_id)
    listed = await loop.ok("dispatcher", "GET", "/tickets?status=new")
    assert [t["id"] for t in listed["items"]] == [ticket_id]

    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/accept", {})
    await seen.new(("status.accepted", {}))
    assign = {"unit": UNIT_A, "note": "请三日内修复", "due_date": "2026-11-28"}
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", assign)
    [got] = await seen.new(("status.assigned", {"unit": UNIT_A}))
    assert UNIT_A in got.text
    # The other unit cannot see, let alone answer, a ticket that is not theirs.
    assert (await loop.call("unit_b", "GET", f"/tickets/{ticket_id}"))[0] == 404
    assert (await loop.call("unit_b", "POST", f"/tickets/{ticket_id}/reply", {"text": "x"}))[0] == 404
    queue = await loop.ok("unit_a", "GET", f"/units/{UNIT_A}/queue")
    assert [t["id"] for t in queue["items"]] == [ticket_id]

    # Two days pass before the unit answers: WeChat's 48-hour window has closed by then.
    loop.clock.advance(49 * 3600)
    await loop.ok("unit_a", "POST", f"/tickets/{ticket_id}/reply", {"text": ANSWER})
    [got] = await seen.new(("status.replied", {"unit": UNIT_A, "text": ANSWER}))
    assert got.how == "template" or ANSWER in got.text
    await loop.ok("unit_a", "POST", f"/tickets/{ticket_id}/resolve", {"resolution": RESOLUTION})
    await seen.new(("status.resolved", {"text": RESOLUTION}), ("survey.ask", {}))

    # The citizen is not happy, and says why.
    await seen.say("不满意", "survey_thanks_low", ("status.redispatched", {"attempt": "2"}), rating="2")
    await seen.say(COMMENT, "survey_comment_thanks")
    ticket = await loop.detail(ticket_id)
    assert ticket["status"] == "redispatched" and ticket["attempts"] == 1
    assert ticket["failed_units"] == [UNIT_A] and ticket["unit"] == ""
    assert (ticket["rating"], ticket["rating_comment"]) == (2, COMMENT)
    back = await loop.ok("dispatcher", "GET", "/tickets?status=redispatched")
    assert [t["id"] for t in back["items"]] == [ticket_id]

    # Second round: another unit takes it and resolves; the citizen is satisfied.
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", {"unit": UNIT_B, "note": COMMENT})
    await seen.new(("status.assigned", {"unit": UNIT_B}))
    await loop.ok("unit_b", "POST", f"/tickets/{ticket_id}/resolve", {"resolution": AGAIN})
    await seen.new(("status.resolved", {"text": AGAIN}), ("survey.ask", {}))
    await seen.say("5", "survey_thanks", rating="5")
    ticket = await loop.detail(ticket_id)
    assert (ticket["status"], ticket["rating"], ticket["attempts"]) == ("closed", 5, 1)
    assert ticket["failed_units"] == [UNIT_A] and ticket["unit"] == UNIT_B
    await loop.pushes(citizen, seen.count)  # closing sends nothing more
    return ticket_id


def who(loop: Loop, citizen: Citizen, actor: str) -> str:
    """An event's actor as the role that acted: citizen, system or the staff member's key."""
    if actor == f"citizen:{citizen.address}":
        return "citizen"
    members = {f"staff:{sid}": name for name, sid in loop.staff_ids.items()}
    return members.get(actor, actor)


async def check_timeline(loop: Loop, citizen: Citizen, ticket_id: str) -> list[dict[str, Any]]:
    """The detail's timeline holds the whole life, in order, each step with who did it; every
    push names its message and carries the outcome of its delivery."""
    timeline: list[dict[str, Any]] = (await loop.detail(ticket_id))["timeline"]
    steps = [(e["kind"], who(loop, citizen, e["actor"])) for e in timeline if e["kind"] != "push"]
    assert steps == [
        ("created", "citizen"),
        ("status", "dispatcher"),  # accepted
        ("status", "dispatcher"),  # assigned
        ("assigned", "dispatcher"),
        ("status", "unit_a"),  # replied
        ("reply", "unit_a"),
        ("status", "unit_a"),  # resolved
        ("resolution", "unit_a"),
        ("rating", "citizen"),
        ("status", "citizen"),  # redispatched
        ("redispatched", "citizen"),
        ("rating_comment", "citizen"),
        ("status", "dispatcher"),  # assigned again
        ("assigned", "dispatcher"),
        ("status", "unit_b"),  # resolved again
        ("resolution", "unit_b"),
        ("rating", "citizen"),
        ("status", "citizen"),  # closed
    ], steps
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in timeline if e["kind"] == "status"]
    assert moves == [
        ("new", "accepted"),
        ("accepted", "assigned"),
        ("assigned", "replied"),
        ("replied", "resolved"),
        ("resolved", "redispatched"),
        ("redispatched", "assigned"),
        ("assigned", "resolved"),
        ("resolved", "closed"),
    ]
    by_kind = {e["kind"]: e["payload"] for e in timeline if e["kind"] in ("reply", "redispatched")}
    assert by_kind["reply"]["text"] == ANSWER
    assert (by_kind["redispatched"]["failed_unit"], by_kind["redispatched"]["attempt"]) == (UNIT_A, 2)
    ratings = [(e["payload"]["rating"], e["payload"]["unit"]) for e in timeline if e["kind"] == "rating"]
    assert ratings == [(2, UNIT_A), (5, UNIT_B)]
    pushes = [e for e in timeline if e["kind"] == "push"]
    assert [p["payload"]["key"] for p in pushes] == [
        "status.accepted",
        "status.assigned",
        "status.replied",
        "status.resolved",
        "status.redispatched",
        "status.assigned",
        "status.resolved",
    ]
    for p in pushes:
        assert p["actor"] == "system"
        assert p["delivery"]["status"] in ("sent", "delivered"), p
        assert p["delivery"]["recipient"] == citizen.address, p
    return pushes


async def check_stats(loop: Loop, channel: str) -> None:
    stats = await loop.ok("viewer", "GET", "/stats")
    assert (stats["received"], stats["by_channel"][channel], stats["in_progress"]) == (1, 1, 0)
    assert (stats["rated"], stats["satisfaction_rate"]) == (2, 0.5)
    units = {u["unit"]: (u["rated"], u["satisfied"]) for u in stats["by_unit"]}
    assert units == {UNIT_A: (1, 0), UNIT_B: (1, 1)}


async def test_wechat_citizen_whole_life(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.wechat()
        ticket_id = await whole_life(loop, citizen)
        pushes = await check_timeline(loop, citizen, ticket_id)
        # Inside the 48-hour window pushes are customer-service messages; the reply and the
        # resolution two days later had to be template messages; the rating reopened the window.
        paths = [(p["payload"]["key"], p["delivery"]["path"]) for p in pushes]
        assert paths == [
            ("status.accepted", "custom"),
            ("status.assigned", "custom"),
            ("status.replied", "template"),
            ("status.resolved", "template"),
            ("status.redispatched", "custom"),
            ("status.assigned", "custom"),
            ("status.resolved", "custom"),
        ]
        template = next(r for r in citizen.received() if r.how == "template").raw["body"]
        assert template["template_id"] == "TPL_SANDBOX_STATUS"
        assert (
            "\n" not in template["data"]["thing2"]["value"] and len(template["data"]["thing2"]["value"]) <= 20
        )
        await check_stats(loop, "wechat")


async def test_sms_citizen_whole_life(data_dir: Path, valkey_url: str, redis_client: aioredis.Redis) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.sms()
        ticket_id = await whole_life(loop, citizen)
        await check_timeline(loop, citizen, ticket_id)
        await check_stats(loop, "sms")
        assert {r.raw["from"] for r in citizen.received()} == {SANDBOX_NUMBER}


async def test_email_citizen_whole_life(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.email()
        ticket_id = await whole_life(loop, citizen)
        await check_timeline(loop, citizen, ticket_id)
        await check_stats(loop, "email")
        mails = citizen.received()
        # Every mail names the ticket in its subject (the gateway threads replies by it), and
        # each answer to one of the citizen's mails is In-Reply-To that mail.
        assert all(f"[{ticket_id}]" in m.raw["subject"] for m in mails), [m.raw["subject"] for m in mails]
        answers = [m.raw["in_reply_to"] for m in mails if m.raw["in_reply_to"] in citizen.sent]
        assert answers == citizen.sent  # filing, 不满意, the comment, 5
        # Status pushes answer no mail of the citizen's, yet join the same thread: In-Reply-To
        # the mail before, References back to the citizen's first mail.
        first = citizen.sent[0]
        for before, mail in itertools.pairwise(mails):
            assert mail.raw["references"][0] == first, mail.raw
            if mail.raw["in_reply_to"] not in citizen.sent:
                assert mail.raw["in_reply_to"] == before.raw["message_id"], (before.raw, mail.raw)
