"""Time in the staff loop, end to end (issue 7): the survey reminder after 24 h and expiry after
72 h onto the call-back list, fired by serve's own scheduler; quiet-hours deferral of a push
(21:30–08:00 local) and its exception for a citizen who is talking to us right now.

The gateway's TestClock only moves when a test moves it; the scheduler and the dispatcher poll
on real time and compare against that clock, so after moving it we wait (real time) for them.
The kit is in test_staff_loop.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import redis.asyncio as aioredis

from gateway.testing import TestClock as Clock  # "Test…" names would be collected by pytest
from tests.e2e.test_staff_loop import MORNING, UNIT_A, ZONE, Citizen, Loop, running_loop, text_of

HOUR = 3600.0
SCHEDULER_ROUND_S = 1.5  # serve's scheduler looks for due timers once a second (real time)


async def nothing_new(loop: Loop, citizen: Citizen, count: int) -> None:
    """A scheduler round and a dispatcher pass go by, and the citizen still has ``count``."""
    await asyncio.sleep(SCHEDULER_ROUND_S)
    assert len(citizen.received()) == count, [r.text for r in citizen.received()[count:]]


async def resolved_ticket(loop: Loop, citizen: Citizen) -> str:
    """Filed, accepted, assigned and resolved; the citizen got the four pushes (the last two
    are the resolution and the survey question)."""
    ticket_id = await citizen.file()
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/accept", {})
    await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", {"unit": UNIT_A})
    await loop.ok("unit_a", "POST", f"/tickets/{ticket_id}/resolve", {"resolution": "垃圾已清运"})
    got = await loop.pushes(citizen, 4)
    assert got[-1].text == text_of("survey.ask", "sms", ticket_id=ticket_id)
    return ticket_id


async def test_unanswered_survey_is_reminded_then_closed_unrated_onto_the_callback_list(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.sms()
        ticket_id = await resolved_ticket(loop, citizen)
        resolved_at = loop.clock()

        loop.clock.now = resolved_at + 24 * HOUR - 60  # a minute short of the reminder
        await nothing_new(loop, citizen, 4)
        loop.clock.now = resolved_at + 24 * HOUR + 1
        got = await loop.pushes(citizen, 5, tick=False)
        assert got[-1].text == text_of("survey.reminder", "sms", ticket_id=ticket_id)
        ticket = await loop.detail(ticket_id)
        assert (ticket["status"], ticket["rating_state"]) == ("resolved", "pending")
        assert ("survey_reminder", "system") in [(e["kind"], e["actor"]) for e in ticket["timeline"]]

        loop.clock.now = resolved_at + 72 * HOUR - 60  # one reminder only, no expiry yet
        await nothing_new(loop, citizen, 5)
        loop.clock.now = resolved_at + 72 * HOUR + 1
        got = await loop.pushes(citizen, 6, tick=False)
        assert got[-1].text == text_of("survey.closed_unrated", "sms", ticket_id=ticket_id)
        ticket = await loop.detail(ticket_id)
        assert (ticket["status"], ticket["rating_state"], ticket["rating"]) == ("closed", "not_rated", None)
        closing = [e for e in ticket["timeline"] if e["kind"] == "status"][-1]
        assert (closing["actor"], closing["payload"]["to"]) == ("system", "closed")
        listed = await loop.ok("supervisor", "GET", "/callbacks")
        assert [i["ticket"]["id"] for i in listed["items"]] == [ticket_id]

        # Too late for the survey: a "5" now is not taken as a rating.
        await citizen.say("5")
        assert (await loop.detail(ticket_id))["rating"] is None

        # The call-back (回访) reaches the citizen by phone; the outcome is recorded as the rating.
        body = {"reached": True, "rating": 4, "comment": "电话回访：已清运，基本满意"}
        after = await loop.ok("dispatcher", "POST", f"/callbacks/{ticket_id}", body)
        assert (after["status"], after["rating"], after["rating_state"]) == ("closed", 4, "rated")
        assert (await loop.ok("supervisor", "GET", "/callbacks"))["items"] == []
        stats = await loop.ok("viewer", "GET", "/stats")
        assert (stats["rated"], stats["satisfaction_rate"]) == (1, 1.0)


def local(day: int, hour: int, minute: int = 0) -> float:
    """A moment of the week of MORNING (Wednesday 25 November 2026) in the tenant's zone."""
    return datetime(2026, 11, day, hour, minute, tzinfo=ZONE).timestamp()


async def test_a_push_at_night_waits_until_eight_in_the_morning(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(MORNING)) as loop:
        citizen = loop.wechat()
        ticket_id = await citizen.file()  # at 10:00; by evening the citizen is long gone
        loop.clock.now = local(25, 22, 0)
        await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/accept", {})
        await nothing_new(loop, citizen, 0)
        push = [e for e in (await loop.detail(ticket_id))["timeline"] if e["kind"] == "push"][-1]
        assert push["delivery"]["status"] == "queued", push  # held back, not failed
        loop.clock.now = local(26, 7, 59)  # still quiet
        await nothing_new(loop, citizen, 0)
        loop.clock.now = local(26, 8, 1)
        [got] = await loop.pushes(citizen, 1, tick=False)
        assert got.text == text_of("status.accepted", "text", ticket_id=ticket_id)
        push = [e for e in (await loop.detail(ticket_id))["timeline"] if e["kind"] == "push"][-1]
        assert push["delivery"]["status"] == "sent"


async def test_a_citizen_talking_to_us_at_night_is_answered_at_once(
    data_dir: Path, valkey_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_loop(data_dir, valkey_url, redis_client, Clock(local(25, 23, 10))) as loop:
        citizen = loop.wechat()
        ticket_id = await citizen.file()  # at 23:10: the citizen is talking to us right now
        await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/accept", {})
        [got] = await loop.pushes(citizen, 1, tick=False)
        assert got.text == text_of("status.accepted", "text", ticket_id=ticket_id)
        # Half an hour later they have gone quiet: the next push waits for the morning.
        loop.clock.advance(0.5 * HOUR)
        await loop.ok("dispatcher", "POST", f"/tickets/{ticket_id}/assign", {"unit": UNIT_A})
        await nothing_new(loop, citizen, 1)
        loop.clock.now = local(26, 8, 1)
        got2 = await loop.pushes(citizen, 2, tick=False)
        assert got2[-1].text == text_of("status.assigned", "text", ticket_id=ticket_id, unit=UNIT_A)
