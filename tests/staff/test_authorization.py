"""Role × route authorization matrix, and object-level access on tickets.

The expected matrix is written out here by hand from the issue's role descriptions (not read from
gateway.staff.access), so a change to the policy has to be a deliberate change to this table.
"""

from __future__ import annotations

import pytest

from gateway.staff import ROUTES
from tests.staff.conftest import Api

ALL = {"admin", "dispatcher", "unit", "supervisor", "gridworker", "viewer"}
READERS = {"admin", "dispatcher", "unit", "supervisor", "gridworker"}
UNIT_WORK = {"admin", "dispatcher", "unit"}
DISPATCH = {"admin", "dispatcher"}

EXPECTED: dict[str, set[str]] = {
    "listTickets": READERS,
    "createTicket": {"admin", "dispatcher", "gridworker"},
    "getTicket": READERS,
    "acceptTicket": DISPATCH,
    "rejectTicket": DISPATCH,
    "assignTicket": DISPATCH,
    "addNote": UNIT_WORK | {"supervisor"},
    "replyToCitizen": UNIT_WORK,
    "requestInfo": UNIT_WORK,
    "resolveTicket": UNIT_WORK,
    "reopenTicket": DISPATCH,
    "mergeTicket": DISPATCH,
    "getAttachment": READERS,
    "listUnits": READERS,
    "createUnit": {"admin"},
    "renameUnit": {"admin"},
    "unitQueue": {"admin", "dispatcher", "unit", "supervisor"},
    "getStats": {"admin", "dispatcher", "supervisor", "viewer"},
    "listDeadLetters": {"admin", "dispatcher", "supervisor"},
    "retryDeadLetter": DISPATCH,
    "listCallbacks": {"admin", "dispatcher", "supervisor"},
    "recordCallback": DISPATCH,
    "listSupervision": {"admin", "dispatcher", "supervisor"},
    "listWebhooks": {"admin"},
    "createWebhook": {"admin"},
    "deleteWebhook": {"admin"},
    # Citizens waiting for a human: the dispatch desk answers and closes, supervisors watch.
    "listHandoffs": {"admin", "dispatcher", "supervisor"},
    "replyToHandoff": DISPATCH,
    "closeHandoff": DISPATCH,
}

BODIES: dict[str, dict[str, object]] = {
    "createTicket": {"description": "井盖丢失", "phone": "13900001111"},
    "rejectTicket": {"reason": "不属于受理范围"},
    "assignTicket": {"unit": "城管局"},
    "addNote": {"text": "备注"},
    "replyToCitizen": {"text": "答复"},
    "requestInfo": {"question": "具体门牌号？"},
    "resolveTicket": {"resolution": "已办结"},
    "reopenTicket": {"reason": "重新处理"},
    "createUnit": {"name": "新单位"},
    "renameUnit": {"name": "城市管理局"},
    "recordCallback": {"reached": False},
    "createWebhook": {"url": "https://gov.example.cn/hook"},
    "replyToHandoff": {"text": "您好，请讲"},
}


def test_matrix_covers_every_route() -> None:
    assert {r.name for r in ROUTES} == set(EXPECTED)


async def _path(api: Api, name: str, path: str, tid: str, other: str) -> str:
    return (
        path.replace("{ticket_id}", tid)
        .replace("{unit_id}", "城管局")
        .replace("{media_id}", "nosuchmedia")
        .replace("{entry_id}", "1-0")
        .replace("{webhook_id}", "whnone")
        .replace("{address}", "wechat%3Awxsandbox000000000%3Ao_not_waiting")
    )


@pytest.mark.parametrize("role", sorted(ALL))
async def test_role_matrix(api: Api, role: str) -> None:
    for spec in ROUTES:
        # A fresh ticket per route, assigned to the unit member's unit, so object-level checks
        # pass for the roles that should get through; the grid worker's is one they entered.
        tid = await api.assigned_ticket()
        if role == "gridworker":
            tid = str((await api.ok("gridworker", "POST", "/tickets", {"description": "网格来信"}))["id"])
        other = await api.new_ticket()
        body: dict[str, object] = dict(BODIES.get(spec.name, {}))
        if spec.name == "mergeTicket":
            body = {"into": other}
        path = await _path(api, spec.name, spec.path, tid, other)
        status, data = await api.call(role, spec.method, path, body if spec.body is not None else None)
        if role in EXPECTED[spec.name]:
            assert status not in (401, 403), (spec.name, role, status, data)
            assert status < 500, (spec.name, role, status, data)
        else:
            assert status == 403, (spec.name, role, status, data)
            assert data["error"]["code"] == "forbidden"


async def test_every_route_needs_a_token(api: Api) -> None:
    for spec in ROUTES:
        path = spec.full_path.replace("{", "").replace("}", "")
        resp = await api.client.request(spec.method, path, headers={"Authorization": "Bearer sulai_wrong"})
        assert resp.status == 401, spec.name
        assert (await resp.json())["error"]["code"] == "unauthorized"
        resp = await api.client.request(spec.method, path)
        assert resp.status == 401, spec.name


async def test_revoked_token_stops_working(api: Api) -> None:
    from gateway.staff.auth import revoke_staff

    assert (await api.call("viewer", "GET", "/stats"))[0] == 200
    assert await revoke_staff(api.ctx.redis, "default", api.staff["viewer"].id)
    assert (await api.call("viewer", "GET", "/stats"))[0] == 401


async def test_other_units_ticket_is_404_like_a_missing_one(api: Api) -> None:
    mine = await api.assigned_ticket("住建局")  # unit2's ticket; "unit" belongs to 城管局
    missing = mine[:-3] + "9999-0"  # nonexistent shape-valid or not, both must read the same
    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/reply", {"text": "x"}),
        ("POST", "/resolve", {"resolution": "x"}),
        ("POST", "/notes", {"text": "x"}),
        ("POST", "/request-info", {"question": "x"}),
        ("GET", "/attachments/abc", None),
    ):
        s1, d1 = await api.call("unit", method, f"/tickets/{mine}{suffix}", body)
        s2, d2 = await api.call("unit", method, f"/tickets/{missing}{suffix}", body)
        assert (s1, d1) == (404, d2) and s2 == 404, (suffix, s1, d1, s2, d2)
    detail = await api.ok("unit2", "GET", f"/tickets/{mine}")
    assert [e["kind"] for e in detail["timeline"]].count("reply") == 0  # nothing was written


async def test_enumerating_ids_reveals_nothing(api: Api) -> None:
    tids = [await api.assigned_ticket("住建局") for _ in range(3)]
    listing = await api.ok("unit", "GET", "/tickets")
    assert listing["items"] == []
    bodies = set()
    for tid in [*tids, tids[0].replace("-0001-", "-0042-")]:
        status, data = await api.call("unit", "GET", f"/tickets/{tid}")
        assert status == 404
        bodies.add(str(data))
    assert len(bodies) == 1
    status, _ = await api.call("unit", "GET", "/units/住建局/queue")
    assert status == 404
    assert len((await api.ok("unit2", "GET", "/tickets"))["items"]) == 3


async def test_gridworker_sees_only_what_they_entered(api: Api) -> None:
    theirs = (
        await api.ok(
            "gridworker",
            "POST",
            "/tickets",
            {"description": "信箱来信", "grid": "G-17", "letter_date": "2026-11-20"},
        )
    )["id"]
    other = await api.new_ticket()
    listing = await api.ok("gridworker", "GET", "/tickets")
    assert [t["id"] for t in listing["items"]] == [theirs]
    assert (await api.call("gridworker", "GET", f"/tickets/{other}"))[0] == 404
    detail = await api.ok("gridworker", "GET", f"/tickets/{theirs}")
    assert detail["provenance"]["grid"] == "G-17" and detail["provenance"]["letter_date"] == "2026-11-20"
    assert detail["channel"] == "offline"
