"""The second, template-only provider (Aliyun) behind the same SMS channel: JSON-array pushes
through the gateway's webhook route with the exact ack, and SendSms against the fake, which
checks the signature and the template's variables."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from channels.base import (
    DeliveryUpdate,
    Inbound,
    InboundKind,
    Outbound,
    Purpose,
    RenderedMessage,
    SendError,
    SendErrorCode,
)
from channels.sms.adapter import SmsAdapter
from channels.sms.fake_aliyun import FakeAliyun, start_fake
from channels.sms.settings import parse_settings
from channels.sms.testkit import FIXTURES, dir_media_sink
from gateway.webhooks import IntakeOutcome, WebhookRoutes
from store.sms_state import RedisSmsState

TOKEN = "s3cret-push-token"
SECRET = "aliyun-secret"
TEMPLATES = {"SMS_100001": ["ticket_id", "unit"], "SMS_100002": ["ticket_id"]}


@pytest.fixture
async def env(
    data_dir: Path, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[SmsAdapter, FakeAliyun, str, list[Inbound]]]:
    fake = FakeAliyun("LTAI5tFakeKey", SECRET, "速来办", TEMPLATES, data_dir / "sms-sent.jsonl")
    fake_runner, fake_url = await start_fake(fake)
    raw = {
        "provider": "aliyun",
        "numbers": ["1069000012345"],
        "public_base_url": "http://127.0.0.1:8080",
        "send_rate": 100.0,
        "send_burst": 100,
        "aliyun": {
            "access_key_id": "LTAI5tFakeKey",
            "access_key_secret": SECRET,
            "sign_name": "速来办",
            "url_token": TOKEN,
            "api_base": fake_url,
            "templates": {"status_assigned": "SMS_100001", "ticket_created": "SMS_100002"},
        },
    }
    adapter = SmsAdapter(
        parse_settings(raw), state=RedisSmsState(redis_client), media_sink=dir_media_sink(data_dir)
    )
    seen: list[Inbound] = []

    async def intake(inbound: Inbound, deadline: float) -> IntakeOutcome:
        seen.append(inbound)
        return IntakeOutcome(texts=("这段话不能出现在应答里",))

    async def deliveries(channel: str, update: DeliveryUpdate) -> None:
        raise AssertionError("no delivery reports expected")

    app = web.Application()
    WebhookRoutes([adapter], intake, deliveries, "http://127.0.0.1:8080", {"sms": 5.0}).install(app)
    gw_runner = web.AppRunner(app)
    await gw_runner.setup()
    await web.TCPSite(gw_runner, "127.0.0.1", 0).start()
    gw_url = f"http://127.0.0.1:{gw_runner.addresses[0][1]}"
    yield adapter, fake, gw_url, seen
    await adapter.close()
    await gw_runner.cleanup()
    await fake_runner.cleanup()


async def post_fixture(url: str, name: str) -> tuple[int, bytes]:
    body = (FIXTURES / "aliyun" / f"{name}.json").read_bytes()
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, await resp.read()


ACK = '{"code":0,"msg":"接收成功"}'.encode()


@pytest.mark.parametrize(
    ("fixture", "token", "status", "senders", "kinds"),
    [
        (
            "two_messages",
            TOKEN,
            200,
            ["tel:+8613812345678", "tel:+8613900001111"],
            [InboundKind.TEXT, InboundKind.TEXT],
        ),
        ("opt_out_td", TOKEN, 200, ["tel:+8613812345678"], [InboundKind.CONSENT]),
        ("empty_batch", TOKEN, 200, [], []),
        ("two_messages", "wrong", 403, [], []),
        ("missing_content", TOKEN, 400, [], []),
        ("not_an_array", TOKEN, 400, [], []),
    ],
)
async def test_aliyun_push(
    env: tuple[SmsAdapter, FakeAliyun, str, list[Inbound]],
    fixture: str,
    token: str,
    status: int,
    senders: list[str],
    kinds: list[InboundKind],
) -> None:
    _, _, gw_url, seen = env
    got_status, body = await post_fixture(f"{gw_url}/sms/aliyun?token={token}", fixture)
    assert got_status == status
    if status == 200:
        assert body == ACK  # byte for byte, whatever the engine answered
    assert [i.sender for i in seen] == senders and [i.kind for i in seen] == kinds
    if fixture == "two_messages" and status == 200:
        assert [i.external_id for i in seen] == ["aliyun:1234567890", "aliyun:1234567891"]
        assert seen[0].text == "人民路和解放路口的路灯坏了" and seen[0].account == "1069000012345"
    if fixture == "opt_out_td":
        assert seen[0].event == "opt_out"


async def test_aliyun_simulated_push(env: tuple[SmsAdapter, FakeAliyun, str, list[Inbound]]) -> None:
    from channels.sms.simulator import aliyun_push

    _, fake, gw_url, seen = env
    status, text = await fake.push(
        f"{gw_url}/sms/aliyun?token={TOKEN}", [aliyun_push("13812345678", "井盖丢了")]
    )
    assert (status, text) == (200, ACK.decode())
    assert seen[0].text == "井盖丢了"


def outbound(key: str, params: dict[str, str]) -> Outbound:
    return Outbound(
        id="o-1",
        tenant="default",
        recipient="tel:+8613812345678",
        purpose=Purpose.STATUS,
        key=key,
        params=params,
    )


async def test_aliyun_send_maps_key_to_template(
    env: tuple[SmsAdapter, FakeAliyun, str, list[Inbound]], data_dir: Path
) -> None:
    adapter, fake, _, _ = env
    result = await adapter.send(
        outbound("status_assigned", {"ticket_id": "SN-261125-0042-7", "unit": "城管局"}),
        RenderedMessage("ignored"),
    )
    assert result.path == "template" and result.provider_id.endswith("^0")
    (sent,) = fake.sent
    assert (sent["phone"], sent["template"], sent["out_id"]) == ("13812345678", "SMS_100001", "o-1")
    assert sent["params"] == {"ticket_id": "SN-261125-0042-7", "unit": "城管局"}
    line = json.loads((data_dir / "sms-sent.jsonl").read_text(encoding="utf-8"))
    assert line["template"] == "SMS_100001"


@pytest.mark.parametrize(
    ("key", "params", "programmed", "code"),
    [
        ("unknown_key", {}, None, SendErrorCode.MISCONFIGURED),  # never reaches the API
        ("ticket_created", {}, None, SendErrorCode.REJECTED),  # template variable missing
        ("ticket_created", {"ticket_id": "x"}, "isv.BUSINESS_LIMIT_CONTROL", SendErrorCode.RATE_LIMITED),
        ("ticket_created", {"ticket_id": "x"}, "isp.SYSTEM_ERROR", SendErrorCode.TEMPORARY),
        ("ticket_created", {"ticket_id": "x"}, "isv.MOBILE_NUMBER_ILLEGAL", SendErrorCode.UNREACHABLE),
    ],
)
async def test_aliyun_send_errors(
    env: tuple[SmsAdapter, FakeAliyun, str, list[Inbound]],
    key: str,
    params: dict[str, str],
    programmed: str | None,
    code: SendErrorCode,
) -> None:
    adapter, fake, _, _ = env
    if programmed:
        fake.program("13812345678", programmed)
    with pytest.raises(SendError) as err:
        await adapter.send(outbound(key, params), RenderedMessage("ignored"))
    assert err.value.code is code
    assert fake.requests == (0 if key == "unknown_key" else 1) and fake.sent == []


async def test_aliyun_wrong_secret_is_misconfigured(
    env: tuple[SmsAdapter, FakeAliyun, str, list[Inbound]],
) -> None:
    adapter, fake, _, _ = env
    fake.access_key_secret = "rotated"
    with pytest.raises(SendError) as err:
        await adapter.send(outbound("ticket_created", {"ticket_id": "x"}), RenderedMessage("ignored"))
    assert (
        err.value.code is SendErrorCode.MISCONFIGURED and err.value.provider_code == "SignatureDoesNotMatch"
    )
