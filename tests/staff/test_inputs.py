"""Idempotency-Key replays, invalid inputs on every route (→ clear 4xx, nothing changed), and the
OpenAPI document listing every route."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.staff import ROUTES
from store import keys
from tests.staff.conftest import Api, outbox_entries


async def snapshot(api: Api, tid: str) -> tuple[dict[Any, Any], int, int]:
    r = api.ctx.redis
    return (
        await r.hgetall(keys.ticket("default", tid)),
        await r.llen(keys.ticket_events("default", tid)),
        await r.xlen(keys.outbox("default")),
    )


async def test_idempotency_key_replays_first_result(api: Api) -> None:
    tid = await api.assigned_ticket()
    first = await api.call("unit", "POST", f"/tickets/{tid}/reply", {"text": "第一次"}, idem="abc")
    before = await snapshot(api, tid)
    again = await api.call("unit", "POST", f"/tickets/{tid}/reply", {"text": "第一次"}, idem="abc")
    assert again == first and first[0] == 200
    assert await snapshot(api, tid) == before
    reused = await api.call("unit", "POST", f"/tickets/{tid}/reply", {"text": "不同"}, idem="abc")
    assert reused[0] == 422 and reused[1]["error"]["code"] == "idempotency_key_reused"
    # Keys are per staff member: the same key from someone else is a new request.
    other = await api.call("dispatcher", "POST", f"/tickets/{tid}/notes", {"text": "x"}, idem="abc")
    assert other[0] == 201


async def test_create_replay_makes_one_ticket(api: Api) -> None:
    body = {"description": "噪音扰民", "phone": "13900002222"}
    s1, d1 = await api.call("gridworker", "POST", "/tickets", body, idem="letter-1")
    s2, d2 = await api.call("gridworker", "POST", "/tickets", body, idem="letter-1")
    assert (s1, d1) == (s2, d2) and s1 == 201
    assert await api.ctx.redis.zcard(keys.index_created("default")) == 1


BAD_BODIES = [
    ("/reject", {"reason": 5}, "invalid_type"),
    ("/reject", {}, "missing_field"),
    ("/reject", {"reason": "  "}, "too_short"),
    ("/assign", {"unit": "城管局", "due_date": "tomorrow"}, "invalid_value"),
    ("/assign", {"unit": "不存在的局"}, "unknown_unit"),
    ("/assign", {"unit": "城管局", "colour": "red"}, "unknown_field"),
    ("/notes", {"text": "x" * 5000}, "too_long"),
    ("/reply", {"text": None}, "invalid_type"),
    ("/resolve", {"resolution": ["a"]}, "invalid_type"),
    ("/merge", {"into": "SN-000000-0000-0"}, "not_found"),
    ("/resolve", {"resolution": "过早"}, "illegal_transition"),  # a new ticket cannot be resolved
    ("/reply", {"text": "过早"}, "illegal_transition"),
    ("/reopen", {"reason": "x"}, "illegal_transition"),
]


@pytest.mark.parametrize(("suffix", "body", "code"), BAD_BODIES)
async def test_invalid_inputs_change_nothing(api: Api, suffix: str, body: dict[str, Any], code: str) -> None:
    tid = await api.new_ticket()
    before = await snapshot(api, tid)
    status, data = await api.call("admin", "POST", f"/tickets/{tid}{suffix}", body)
    assert 400 <= status < 500 and data["error"]["code"] == code, (status, data)
    assert await snapshot(api, tid) == before


async def test_malformed_requests(api: Api) -> None:
    tid = await api.new_ticket()
    h = api.headers("admin")
    resp = await api.client.post(
        f"/api/v1/tickets/{tid}/reject", data=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"
    resp = await api.client.post(
        f"/api/v1/tickets/{tid}/reject", data=b"[1,2]", headers={**h, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await api.client.post(
        f"/api/v1/tickets/{tid}/notes",
        data=b'{"text":"' + b"a" * 70000 + b'"}',
        headers={**h, "Content-Type": "application/json"},
    )
    assert resp.status == 413
    for query, field in (
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("status=nope", "status"),
        ("bogus=1", "bogus"),
        ("cursor=%%%", "cursor"),
    ):
        status, data = await api.call("admin", "GET", f"/tickets?{query}")
        assert status == 400 and data["error"]["field"] == field, (query, data)
    for bad_id in ("nonsense", "SN-261125-0001-0", "{x}", "SN-261125-0099-" + "0"):
        assert (await api.call("admin", "GET", f"/tickets/{bad_id}"))[0] == 404
    assert (await api.call("admin", "POST", "/units", {"name": "城管局"}))[0] == 409
    assert (await api.call("admin", "PATCH", "/units/nope", {"name": "x"}))[0] == 404
    assert (await api.call("admin", "POST", "/dead-letters/1-0/retry", {}))[0] == 404
    assert (await api.call("admin", "POST", "/webhooks", {"url": "http://127.0.0.1:9/x"}))[0] == 422
    assert (await api.call("admin", "POST", "/tickets", {"description": "x", "phone": "12"}))[0] == 400


async def test_list_filters_and_paging(api: Api) -> None:
    tids = [await api.new_ticket() for _ in range(5)]
    await api.ok("dispatcher", "POST", f"/tickets/{tids[0]}/assign", {"unit": "城管局"})
    seen: list[str] = []
    cursor = None
    while True:
        q = "/tickets?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await api.ok("dispatcher", "GET", q)
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(tids) and len(seen) == 5
    assigned = await api.ok("dispatcher", "GET", "/tickets?status=assigned")
    assert [t["id"] for t in assigned["items"]] == [tids[0]]
    assert len((await api.ok("dispatcher", "GET", "/tickets?q=路灯&channel=offline"))["items"]) == 5
    assert (await api.ok("dispatcher", "GET", "/tickets?q=不存在"))["items"] == []
    queue = await api.ok("unit", "GET", "/units/城管局/queue")
    assert [t["id"] for t in queue["items"]] == [tids[0]]


async def test_every_route_is_in_the_openapi_document(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json")
    doc = await resp.json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
    }
    assert served and served <= documented
    assert {(s.method, s.full_path) for s in ROUTES} <= documented
    reject = doc["paths"]["/api/v1/tickets/{ticket_id}/reject"]["post"]
    assert reject["requestBody"]["content"]["application/json"]["schema"]["required"] == ["reason"]


async def test_dead_letter_list_and_retry(api: Api) -> None:
    from channels.base import Outbound, Purpose
    from store.outbox_codec import Envelope

    ob = Outbound(
        id="SN-x:1",
        tenant="default",
        recipient="tel:+8613812345678",
        purpose=Purpose.STATUS,
        key="status.accepted",
    )
    entry_id: Any = await api.ctx.redis.xadd(
        keys.outbox_dead("default"),
        {"o": Envelope(ob, attempts=8, why="temporary").to_json(), "why": "temporary", "at": "1"},
    )
    listing = await api.ok("dispatcher", "GET", "/dead-letters")
    assert [(i["id"], i["outbound"]["id"], i["attempts"]) for i in listing["items"]] == [
        (entry_id.decode(), "SN-x:1", 8)
    ]
    await api.ok("dispatcher", "POST", f"/dead-letters/{entry_id.decode()}/retry", {})
    assert await api.ctx.redis.xlen(keys.outbox_dead("default")) == 0
    assert [o.id for o in await outbox_entries(api)] == ["SN-x:1"]
    assert (await api.call("dispatcher", "POST", f"/dead-letters/{entry_id.decode()}/retry", {}))[0] == 404
