"""A unit's queue and ``assigned_now`` hold its open work only; statistics count tickets (the
seed article's "finished or answered of received"), with per-unit resolution counts beside; and
reopening a resolved ticket drops the citizen's pending survey in the same write."""

from __future__ import annotations

from conversation.state import ConversationState
from gateway.staff import survey
from store import keys
from tests.staff.conftest import Api

CITIZEN = "tel:+8613812345678"


async def resolve(api: Api, tid: str, unit_member: str) -> None:
    await api.ok(unit_member, "POST", f"/tickets/{tid}/reply", {"text": "处理中"})
    await api.ok(unit_member, "POST", f"/tickets/{tid}/resolve", {"resolution": "已处理"})


async def queue_ids(api: Api, who: str, unit: str, query: str = "") -> set[str]:
    data = await api.ok(who, "GET", f"/units/{unit}/queue{query}")
    return {item["id"] for item in data["items"]}


async def test_unit_queue_and_assigned_now_hold_open_work_only(api: Api) -> None:
    closed = await api.assigned_ticket("城管局")
    await resolve(api, closed, "unit")
    await survey.record_rating(api.ctx, closed, 5, "", f"citizen:{CITIZEN}")
    waiting = await api.assigned_ticket("城管局")  # resolved, the citizen has not rated yet
    await resolve(api, waiting, "unit")
    assigned = await api.assigned_ticket("城管局")
    replied = await api.assigned_ticket("城管局")
    await api.ok("unit", "POST", f"/tickets/{replied}/reply", {"text": "处理中"})
    reopened = await api.assigned_ticket("城管局")
    await resolve(api, reopened, "unit")
    await api.ok("dispatcher", "POST", f"/tickets/{reopened}/reopen", {"reason": "市民来电"})

    assert await queue_ids(api, "dispatcher", "城管局") == {assigned, replied}
    assert await queue_ids(api, "unit", "城管局") == {assigned, replied}
    assert await queue_ids(api, "dispatcher", "城管局", "?status=replied") == {replied}
    stats = await api.ok("viewer", "GET", "/stats")
    by_unit = {u["unit"]: u["assigned_now"] for u in stats["by_unit"]}
    assert by_unit == {"城管局": 2, "住建局": 0}
    # The unit keeps seeing what it owned: its ticket list is not its queue.
    mine = await api.ok("unit", "GET", "/tickets?status=closed")
    assert [t["id"] for t in mine["items"]] == [closed]


async def test_statistics_count_tickets_not_resolutions(api: Api) -> None:
    twice = await api.assigned_ticket("城管局")
    await resolve(api, twice, "unit")
    await survey.record_rating(api.ctx, twice, 2, "没修好", f"citizen:{CITIZEN}")  # re-dispatched
    await api.ok("dispatcher", "POST", f"/tickets/{twice}/assign", {"unit": "住建局"})
    await resolve(api, twice, "unit2")
    await survey.record_rating(api.ctx, twice, 5, "", f"citizen:{CITIZEN}")
    answered = await api.assigned_ticket("住建局")
    await api.ok("unit2", "POST", f"/tickets/{answered}/reply", {"text": "已联系"})
    await api.new_ticket()  # received, nothing done yet

    stats = await api.ok("viewer", "GET", "/stats")
    assert (stats["received"], stats["resolved"], stats["resolved_or_answered"]) == (3, 1, 2)
    assert (stats["resolutions"], stats["in_progress"]) == (2, 2)
    period = stats["by_period"][-1]  # the last 30 days by default, today last
    assert period["period"] == "2026-11-25"
    assert (period["received"], period["resolved"], period["resolved_or_answered"]) == (3, 1, 2)
    units = {u["unit"]: (u["resolutions"], u["rated"], u["satisfied"]) for u in stats["by_unit"]}
    assert units == {"城管局": (1, 1, 0), "住建局": (1, 1, 1)}


async def test_reopen_drops_the_pending_survey(api: Api) -> None:
    tid = await api.assigned_ticket("城管局")
    await resolve(api, tid, "unit")

    async def pending() -> str | None:
        raw = await api.ctx.redis.hget(keys.conversation("default", CITIZEN), "state")
        return ConversationState.from_json(raw).pending_survey

    assert await pending() == tid
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/reopen", {"reason": "市民来电说没修好"})
    assert await pending() is None
    # Resolving again asks again.
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/assign", {"unit": "城管局"})
    await resolve(api, tid, "unit")
    assert await pending() == tid
