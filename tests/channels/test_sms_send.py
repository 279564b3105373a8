"""Sending SMS through the adapter to the fake Twilio over real HTTP, with the real Valkey:
error classification, opt-out, the cross-process send rate, and signed status callbacks coming
back through the gateway's webhook route in order and out of order."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from channels.base import (
    DeliveryUpdate,
    Inbound,
    Outbound,
    Purpose,
    RenderedMessage,
    SendError,
    SendErrorCode,
)
from channels.sms.adapter import SmsAdapter
from channels.sms.fake_twilio import FakeTwilio, start_fake
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SmsSettings, sandbox_settings
from channels.sms.testkit import dir_media_sink, load_form, twilio_request
from gateway.webhooks import IntakeOutcome, WebhookRoutes
from store import keys
from store.sms_state import RedisSmsState

CITIZEN = "+8613812345678"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def fake(data_dir: Path) -> AsyncIterator[FakeTwilio]:
    runner, _, fake = await start_fake(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, data_dir / "sms-sent.jsonl")
    yield fake
    await runner.cleanup()


@pytest.fixture
def settings(fake: FakeTwilio, data_dir: Path) -> SmsSettings:
    return replace(sandbox_settings(data_dir, fake.base_url), send_rate=50.0, send_burst=50)


def make_adapter(settings: SmsSettings, redis: aioredis.Redis, data_dir: Path) -> SmsAdapter:
    return SmsAdapter(settings, state=RedisSmsState(redis), media_sink=dir_media_sink(data_dir / "media"))


@pytest.fixture
async def adapter(
    settings: SmsSettings, redis_client: aioredis.Redis, data_dir: Path
) -> AsyncIterator[SmsAdapter]:
    adapter = make_adapter(settings, redis_client, data_dir)
    yield adapter
    await adapter.close()


def outbound(to: str = CITIZEN, purpose: Purpose = Purpose.STATUS, n: int = 1) -> Outbound:
    return Outbound(
        id=f"out-{n}",
        tenant="default",
        recipient=f"tel:{to}",
        purpose=purpose,
        key="status_assigned",
        params={},
    )


async def test_send_reaches_the_fake_and_is_recorded(
    adapter: SmsAdapter, fake: FakeTwilio, data_dir: Path
) -> None:
    result = await adapter.send(outbound(), RenderedMessage("您的工单 SN-261125-0042-7 已交办至城管局。"))
    assert result.provider_id.startswith("SM") and result.status == "queued"
    (sent,) = fake.sent
    assert (sent.sid, sent.to, sent.from_) == (result.provider_id, CITIZEN, "+15005550006")
    assert sent.status_callback == "http://127.0.0.1:8080/sms/twilio/status"
    record = (data_dir / "sms-sent.jsonl").read_text(encoding="utf-8")
    assert "SN-261125-0042-7" in record and result.provider_id in record


@pytest.mark.parametrize(
    ("to", "programmed", "code", "provider_code"),
    [
        ("+15005550004", None, SendErrorCode.OPTED_OUT, "21610"),  # Twilio's magic numbers
        ("+15005550001", None, SendErrorCode.UNREACHABLE, "21211"),
        ("+15005550009", None, SendErrorCode.UNREACHABLE, "21614"),
        (CITIZEN, 21610, SendErrorCode.OPTED_OUT, "21610"),
        (CITIZEN, 429, SendErrorCode.RATE_LIMITED, "20429"),
        (CITIZEN, 500, SendErrorCode.TEMPORARY, "20500"),
    ],
)
async def test_send_errors_are_classified(
    adapter: SmsAdapter,
    fake: FakeTwilio,
    to: str,
    programmed: int | None,
    code: SendErrorCode,
    provider_code: str,
) -> None:
    if programmed:
        fake.program(to, programmed)
    with pytest.raises(SendError) as err:
        await adapter.send(outbound(to), RenderedMessage("测试"))
    assert err.value.code is code and err.value.provider_code == provider_code
    assert err.value.retryable == (code in (SendErrorCode.RATE_LIMITED, SendErrorCode.TEMPORARY))
    assert fake.sent == []


async def test_connection_refused_is_temporary(
    settings: SmsSettings, redis_client: aioredis.Redis, data_dir: Path
) -> None:
    assert settings.twilio is not None
    dead = replace(settings, twilio=replace(settings.twilio, api_base=f"http://127.0.0.1:{free_port()}"))
    adapter = make_adapter(dead, redis_client, data_dir)
    try:
        with pytest.raises(SendError) as err:
            await adapter.send(outbound(), RenderedMessage("测试"))
        assert err.value.code is SendErrorCode.TEMPORARY
    finally:
        await adapter.close()


async def test_wrong_credentials_are_misconfigured(adapter: SmsAdapter, fake: FakeTwilio) -> None:
    fake.auth_token = "rotated"
    with pytest.raises(SendError) as err:
        await adapter.send(outbound(), RenderedMessage("测试"))
    assert err.value.code is SendErrorCode.MISCONFIGURED


async def test_21610_marks_number_opted_out_and_only_answers_still_go(
    adapter: SmsAdapter, fake: FakeTwilio, redis_client: aioredis.Redis
) -> None:
    fake.program(CITIZEN, 21610)
    with pytest.raises(SendError):
        await adapter.send(outbound(), RenderedMessage("状态更新"))
    assert await RedisSmsState(redis_client).is_opted_out("default", f"tel:{CITIZEN}")
    requests = fake.requests
    for purpose in (Purpose.STATUS, Purpose.SURVEY, Purpose.REMINDER):
        with pytest.raises(SendError) as err:
            await adapter.send(outbound(purpose=purpose), RenderedMessage("请评价"))
        assert err.value.code is SendErrorCode.OPTED_OUT
    assert fake.requests == requests  # refused without calling the API
    await adapter.send(outbound(purpose=Purpose.REPLY), RenderedMessage("已收到您的新诉求"))
    assert [m.body for m in fake.sent] == ["已收到您的新诉求"]


async def test_send_rate_is_shared_by_two_adapters(
    settings: SmsSettings, fake: FakeTwilio, redis_client: aioredis.Redis, valkey_url: str, data_dir: Path
) -> None:
    slow = replace(settings, send_rate=1.0, send_burst=2)
    other_client = aioredis.Redis.from_url(valkey_url)
    first, second = make_adapter(slow, redis_client, data_dir), make_adapter(slow, other_client, data_dir)
    try:
        await first.send(outbound(n=1), RenderedMessage("一"))
        await second.send(outbound(n=2), RenderedMessage("二"))
        with pytest.raises(SendError) as err:
            await first.send(outbound(n=3), RenderedMessage("三"))
        assert err.value.code is SendErrorCode.RATE_LIMITED and 0 < err.value.retry_after <= 1.0
        with pytest.raises(SendError):
            await second.send(outbound(n=4), RenderedMessage("四"))
        assert len(fake.sent) == 2
        ttl = await redis_client.pttl(keys.rate_tat("default", "sms-send", "+15005550006"))
        assert 0 < ttl <= 3000
    finally:
        await first.close()
        await second.close()
        await other_client.aclose()


async def test_two_segment_text_costs_two(
    settings: SmsSettings, fake: FakeTwilio, redis_client: aioredis.Redis, data_dir: Path
) -> None:
    adapter = make_adapter(replace(settings, send_rate=1.0, send_burst=2), redis_client, data_dir)
    try:
        await adapter.send(outbound(), RenderedMessage("路" * 71))  # UCS-2, 2 segments
        with pytest.raises(SendError) as err:
            await adapter.send(outbound(n=2), RenderedMessage("短"))
        assert err.value.code is SendErrorCode.RATE_LIMITED
    finally:
        await adapter.close()


# --- status callbacks through the gateway's webhook route -----------------------------------------


class Gateway:
    """The lead's generic webhook handler on a real port, with a recording delivery sink."""

    def __init__(self, adapter: SmsAdapter, state: RedisSmsState) -> None:
        self.adapter, self.state = adapter, state
        self.updates: list[DeliveryUpdate] = []

    async def intake(self, inbound: Inbound, deadline: float) -> IntakeOutcome:
        return IntakeOutcome(texts=("收到",))

    async def deliveries(self, channel: str, update: DeliveryUpdate) -> None:
        self.updates.append(update)
        await self.state.advance_delivery(
            "default", f"out-{update.provider_id}", update.status, update.error_code
        )


@pytest.fixture
async def gateway(
    fake: FakeTwilio, data_dir: Path, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[Gateway, SmsAdapter]]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = replace(sandbox_settings(data_dir, fake.base_url, public_base_url=public), send_burst=50)
    adapter = make_adapter(settings, redis_client, data_dir)
    gw = Gateway(adapter, RedisSmsState(redis_client))
    app = web.Application()
    WebhookRoutes([adapter], gw.intake, gw.deliveries, public, {"sms": 5.0}).install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield gw, adapter
    await adapter.close()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("statuses", "error", "final", "permanent"),
    [
        (["sent", "delivered"], "", "delivered", False),
        (["delivered", "sent"], "", "delivered", False),  # out of order: a late "sent" is ignored
        (["sent", "undelivered"], "30005", "undelivered", True),
        (["sent", "undelivered"], "30003", "undelivered", False),
        (["failed"], "21610", "failed", True),
    ],
)
async def test_status_callbacks(
    gateway: tuple[Gateway, SmsAdapter],
    fake: FakeTwilio,
    redis_client: aioredis.Redis,
    statuses: list[str],
    error: str,
    final: str,
    permanent: bool,
) -> None:
    gw, adapter = gateway
    fake.deliver_as(CITIZEN, statuses, error)
    result = await adapter.send(outbound(), RenderedMessage("您的工单已办结"))
    await fake.settle()
    (sent,) = fake.sent
    assert sent.callback_statuses == [200] * (1 + len(statuses))
    assert [u.status for u in gw.updates] == ["queued", *statuses]
    assert all(u.provider_id == result.provider_id for u in gw.updates)
    assert gw.updates[-1].permanent_failure is permanent and gw.updates[-1].error_code == error
    record = await redis_client.hgetall(keys.outbound_record("default", f"out-{result.provider_id}"))
    assert record[b"delivery_status"] == final.encode()
    opted_out = await RedisSmsState(redis_client).is_opted_out("default", f"tel:{CITIZEN}")
    assert opted_out is (error == "21610")


async def test_status_callback_with_bad_signature_is_403(gateway: tuple[Gateway, SmsAdapter]) -> None:
    gw, adapter = gateway
    url = adapter.settings.status_callback_url
    request = twilio_request(url, load_form("status_delivered"), "not-the-token")
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            data=dict(request.form),
            headers={"X-Twilio-Signature": request.headers["x-twilio-signature"]},
        ) as resp,
    ):
        assert resp.status == 403
    assert gw.updates == []


async def test_status_callback_missing_status_is_400(adapter: SmsAdapter) -> None:
    from channels.base import Route, WebhookRejected

    route = Route("POST", "/sms/twilio/status", "twilio-status")
    form = load_form("status_missing_status")
    with pytest.raises(WebhookRejected) as err:
        await adapter.parse_webhook(
            route, twilio_request("http://127.0.0.1:8080" + route.path, form, SANDBOX_AUTH_TOKEN)
        )
    assert err.value.status == 400 and "MessageStatus" in err.value.reason


async def test_proxied_public_url_over_http(gateway: tuple[Gateway, SmsAdapter], data_dir: Path) -> None:
    """Behind a TLS proxy Twilio signs https://public-host/…; the process sees http://127.0.0.1."""
    gw, adapter = gateway
    import aiohttp

    from channels.sms.simulator import TwilioSimulator

    public = "https://sms.sulai.example.gov.cn"
    app = web.Application()
    WebhookRoutes([adapter], gw.intake, gw.deliveries, public, {"sms": 5.0}).install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            good = TwilioSimulator(
                f"http://127.0.0.1:{port}",
                SANDBOX_ACCOUNT_SID,
                SANDBOX_AUTH_TOKEN,
                "+15005550006",
                public,
                session=http,
            )
            status, body = await good.text(CITIZEN, "路灯坏了")
            assert status == 200 and "<Message>收到</Message>" in body
            naive = TwilioSimulator(
                f"http://127.0.0.1:{port}",
                SANDBOX_ACCOUNT_SID,
                SANDBOX_AUTH_TOKEN,
                "+15005550006",
                session=http,
            )
            status, _ = await naive.text(CITIZEN, "路灯坏了")
            assert status == 403
    finally:
        await runner.cleanup()


async def test_keys_left_behind(adapter: SmsAdapter, fake: FakeTwilio, redis_client: aioredis.Redis) -> None:
    fake.program(CITIZEN, 21610)
    with pytest.raises(SendError):
        await adapter.send(outbound(), RenderedMessage("x"))
    await adapter.send(outbound("+8613900000000"), RenderedMessage("y"))
    found = {
        (k.decode() if isinstance(k, bytes) else k): await redis_client.ttl(k)
        for k in await redis_client.keys("*")
    }
    assert set(found) == {
        keys.address_state("default", f"tel:{CITIZEN}"),
        keys.rate_tat("default", "sms-send", "+15005550006"),
    }
    assert 0 < found[keys.address_state("default", f"tel:{CITIZEN}")] <= keys.CONVERSATION_TTL
    assert 0 < found[keys.rate_tat("default", "sms-send", "+15005550006")] <= 3


async def test_simulate_sms_command(gateway: tuple[Gateway, SmsAdapter]) -> None:
    """`sulai simulate sms` posts a signed webhook to a live route and prints the TwiML reply."""
    import asyncio
    import sys

    _, adapter = gateway
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))",
        "simulate",
        "sms",
        "--from",
        "+8613812345678",
        "--gateway",
        adapter.settings.public_base_url,
        "路灯坏了",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out
    assert isinstance(out, bytes)
    assert out.decode().splitlines() == ["HTTP 200", "收到"]
