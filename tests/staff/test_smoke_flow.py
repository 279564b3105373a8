"""A ticket's life through the API: create on behalf, accept, assign, reply, resolve; the
timeline names every actor and the citizen's pushes are queued in the outbox."""

from __future__ import annotations

from tests.staff.conftest import Api, outbox_entries


async def outbox_keys(api: Api) -> list[str]:
    return [o.key for o in await outbox_entries(api)]


async def test_life_of_a_ticket(api: Api) -> None:
    tid = await api.new_ticket()
    await api.ok("dispatcher", "POST", f"/tickets/{tid}/accept", {})
    await api.ok(
        "dispatcher",
        "POST",
        f"/tickets/{tid}/assign",
        {"unit": "城管局", "note": "请尽快", "due_date": "2026-11-30"},
    )
    await api.ok("unit", "POST", f"/tickets/{tid}/notes", {"text": "已派人"})
    await api.ok("unit", "POST", f"/tickets/{tid}/reply", {"text": "已修复"})
    view = await api.ok("unit", "POST", f"/tickets/{tid}/resolve", {"resolution": "路灯已更换"})
    assert view["status"] == "resolved"
    assert view["phone"] == "+86138****5678"  # unit role sees it masked
    detail = await api.ok("dispatcher", "GET", f"/tickets/{tid}")
    assert detail["phone"] == "+8613812345678"
    actors = {(e["kind"], e["actor"]) for e in detail["timeline"]}
    d, u = api.staff["dispatcher"].actor, api.staff["unit"].actor
    assert {("created", d), ("assigned", d), ("note", u), ("reply", u), ("resolution", u)} <= actors
    replies = [
        e for e in detail["timeline"] if e["kind"] == "push" and e["payload"]["key"] == "status.replied"
    ]
    assert replies and replies[0]["delivery"]["status"] == "queued"
    assert await outbox_keys(api) == [
        "ticket.created_offline",
        "status.accepted",
        "status.assigned",
        "status.replied",
        "status.resolved",
        "survey.ask",
    ]
