"""WeChat sends against the loopback fake over real HTTP, with the window state on real Valkey.

Paths: customer-service message inside the 48-h window and quota; template message outside it
(fields ≤ 20 characters, no line breaks); subscription message with consent; WINDOW_CLOSED when
nothing fits. Error codes mapped into the closed set; the token shared by two "processes".
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from channels.base import Outbound, Purpose, RenderedMessage, SendError, SendErrorCode
from channels.wechat.adapter import WeChatAdapter
from channels.wechat.settings import parse_settings
from store import keys
from store.wechat_state import RedisWeChatState
from tests.channels.wechat_kit import NOW, Kit, fixture, make_kit, raw_settings

ADDR = "wechat:wxplain:oCitizen001"
DAY = 24 * 3600


@pytest.fixture
async def kit(redis_client: aioredis.Redis, tmp_path: Path) -> Any:
    async with make_kit(redis_client, tmp_path) as k:
        yield k


def out(key: str = "status", n: int = 1, **params: str) -> Outbound:
    return Outbound(
        id=f"out-{key}-{n}",
        tenant="default",
        recipient=ADDR,
        purpose=Purpose.STATUS,
        key=key,
        params={"status": "已办结", **params},
        ticket_id="SN-261125-0042-7",
    )


TEXT = RenderedMessage("您反映的路灯问题\n已由城管局处理完毕，感谢您对我们工作的支持与监督")


async def citizen_writes(kit: Kit) -> None:
    await kit.push("plaintext", fixture("text_message.xml"))


async def test_window_open_sends_customer_service_message(kit: Kit) -> None:
    await citizen_writes(kit)
    result = await kit.adapter.send(out(), TEXT)
    assert result.path == "custom"
    (sent,) = kit.fake.sent
    assert sent["endpoint"] == "message/custom/send"
    assert sent["body"] == {"touser": "oCitizen001", "msgtype": "text", "text": {"content": TEXT.text}}
    # The fake recorded it as a JSON line too, with the Chinese text readable.
    line = (kit.fake.sent_log or Path()).read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(line)["body"]["text"]["content"] == TEXT.text


async def test_quota_used_up_falls_to_template(kit: Kit) -> None:
    await citizen_writes(kit)
    paths = [(await kit.adapter.send(out(n=i), TEXT)).path for i in range(6)]
    assert paths == ["custom"] * 5 + ["template"]


async def test_after_48_hours_template_with_short_fields(kit: Kit) -> None:
    await citizen_writes(kit)
    kit.clock.now = NOW + 2 * DAY + 1
    result = await kit.adapter.send(out(), TEXT)
    assert result.path == "template" and result.provider_id.isdigit()
    body = kit.fake.sent[-1]["body"]
    assert body["template_id"] == "TPL_STATUS" and body["touser"] == "oCitizen001"
    assert body["data"] == {
        "character_string1": {"value": "SN-261125-0042-7"},
        "phrase2": {"value": "已办结"},
        # 20 characters at most, the line break flattened, an ellipsis where it was cut.
        "thing3": {"value": "您反映的路灯问题 已由城管局处理完毕，…"},
    }
    assert all(len(f["value"]) <= 20 and "\n" not in f["value"] for f in body["data"].values())


async def test_just_inside_48_hours_is_still_custom(kit: Kit) -> None:
    await citizen_writes(kit)
    kit.clock.now = NOW + 2 * DAY - 10
    assert (await kit.adapter.send(out(), TEXT)).path == "custom"


async def test_no_template_no_consent_is_window_closed(kit: Kit) -> None:
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(key="survey"), TEXT)
    assert err.value.code is SendErrorCode.WINDOW_CLOSED and err.value.code.try_other_address
    assert kit.fake.sent == []


async def test_subscription_message_uses_one_time_consent_once(kit: Kit) -> None:
    await kit.push("plaintext", fixture("subscribe_msg_popup.xml"))
    result = await kit.adapter.send(out(key="survey"), RenderedMessage("请对本次办理评价"))
    assert result.path == "subscribe"
    body = kit.fake.sent[-1]["body"]
    assert body == {
        "touser": "oCitizen001",
        "template_id": "SUB_STATUS",
        "data": {"thing1": {"value": "请对本次办理评价"}},
        "page": "pages/survey",
    }
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(key="survey", n=2), RenderedMessage("请对本次办理评价"))
    assert err.value.code is SendErrorCode.WINDOW_CLOSED


async def test_missing_template_param_is_misconfigured(kit: Kit) -> None:
    settings = raw_settings()
    settings["templates"]["status"]["fields"]["time4"] = "{resolved_at}"
    async with make_kit(kit.state._r, Path(str(kit.fake.sent_log)).parent, **settings) as k2:
        with pytest.raises(SendError) as err:
            await k2.adapter.send(out(), TEXT)
    assert err.value.code is SendErrorCode.MISCONFIGURED and "resolved_at" in err.value.message


# errcode from custom send -> (error code, provider code) or the fallback path
ERRORS: list[tuple[int, SendErrorCode | str]] = [
    (45015, "template"),  # out of window: WeChat knows better than our record; use the template
    (45047, "template"),  # quota used up
    (43004, SendErrorCode.UNREACHABLE),
    (45009, SendErrorCode.TEMPORARY),
    (-1, SendErrorCode.TEMPORARY),
    (40003, SendErrorCode.REJECTED),
    (47001, SendErrorCode.REJECTED),
]


@pytest.mark.parametrize(("errcode", "want"), ERRORS, ids=[str(e[0]) for e in ERRORS])
async def test_error_mapping(kit: Kit, errcode: int, want: SendErrorCode | str) -> None:
    await citizen_writes(kit)
    kit.fake.fail_next("message/custom/send", errcode)
    if not isinstance(want, SendErrorCode):
        assert (await kit.adapter.send(out(), TEXT)).path == want
        # And the window stays closed for the next message: no second custom attempt.
        assert (await kit.adapter.send(out(n=2), TEXT)).path == want
        return
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(), TEXT)
    assert err.value.code is want and err.value.provider_code == str(errcode)


async def test_unreachable_is_remembered(kit: Kit) -> None:
    await citizen_writes(kit)
    kit.fake.fail_next("message/custom/send", 43004)
    with pytest.raises(SendError):
        await kit.adapter.send(out(), TEXT)
    calls = len(kit.fake.sent)
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(n=2), TEXT)
    assert err.value.code is SendErrorCode.UNREACHABLE and len(kit.fake.sent) == calls


async def test_send_after_unsubscribe_is_unreachable_without_calling_wechat(kit: Kit) -> None:
    await citizen_writes(kit)
    await kit.push("plaintext", fixture("unsubscribe.xml").replace("1764000000", "1764000050"))
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(), TEXT)
    assert err.value.code is SendErrorCode.UNREACHABLE and err.value.code.try_other_address
    assert kit.fake.sent == []


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
async def test_invalid_token_refreshed_and_retried_once(kit: Kit, errcode: int) -> None:
    await citizen_writes(kit)
    await kit.adapter.send(out(), TEXT)
    kit.fake.fail_next("message/custom/send", errcode)
    result = await kit.adapter.send(out(n=2), TEXT)
    assert result.path == "custom" and len(kit.fake.sent) == 2
    # stable_token hands back the rejected token once more, so the retry forces a new one.
    assert kit.fake.token_fetches["wxplain"] == 3


async def test_expired_token_replaced(kit: Kit) -> None:
    await citizen_writes(kit)
    await kit.adapter.send(out(), TEXT)
    kit.fake.expire_tokens()  # every call with the old token now answers 42001
    result = await kit.adapter.send(out(n=2), TEXT)
    assert result.path == "custom" and len(kit.fake.sent) == 2
    assert kit.fake.token_fetches["wxplain"] == 2


async def test_token_rejected_twice_gives_up(kit: Kit) -> None:
    await citizen_writes(kit)
    kit.fake.fail_next("message/custom/send", 42001, times=2)
    with pytest.raises(SendError) as err:
        await kit.adapter.send(out(), TEXT)
    assert err.value.code is SendErrorCode.REJECTED and err.value.provider_code == "42001"


async def test_concurrent_token_refresh_from_two_processes_fetches_once(kit: Kit, valkey_url: str) -> None:
    """Two adapters with their own Redis connections and HTTP sessions, like two gateway
    processes, send at the same moment with no token cached: WeChat sees one token fetch."""
    await citizen_writes(kit)
    other_redis = aioredis.Redis.from_url(valkey_url)
    other_session = aiohttp.ClientSession()
    other_state = RedisWeChatState(other_redis)
    other = WeChatAdapter(
        parse_settings(raw_settings(custom_quota=50)),
        replay=other_state,
        tokens=other_state,
        addresses=other_state,
        media_sink=kit.shelf,
        session=other_session,
        api_base=kit.base_url,
        clock=kit.clock,
    )
    try:
        sends = [a.send(out(key="status", n=i), TEXT) for i in range(4) for a in (kit.adapter, other)]
        results = await asyncio.gather(*sends)
    finally:
        await other.close()
        await other_session.close()
        await other_redis.aclose()
    assert len(results) == 8 and kit.fake.token_fetches["wxplain"] == 1
    assert len({s["appid"] for s in kit.fake.sent}) == 1 and len(kit.fake.sent) == 8


async def test_plain_token_endpoint_when_stable_token_disabled(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    async with make_kit(redis_client, tmp_path, use_stable_token=False) as kit:
        await citizen_writes(kit)
        await kit.adapter.send(out(), TEXT)
        await kit.adapter.send(out(n=2), TEXT)
        assert kit.fake.token_fetches["wxplain"] == 1


async def test_keys_left_behind(kit: Kit, redis_client: aioredis.Redis) -> None:
    """Every key the channel writes is a store/keys.py key with a TTL (STYLE.md 8)."""
    await citizen_writes(kit)
    await kit.push("plaintext", fixture("location_event.xml"))
    await kit.adapter.send(out(), TEXT)
    found = {
        (k.decode() if isinstance(k, bytes) else k): await redis_client.ttl(k)
        for k in await redis_client.keys("*")
    }
    expected = {keys.address_state("default", ADDR), keys.access_token("default", "wxplain")}
    nonces = {k for k in found if k.startswith(keys.prefix("default") + ":nonce:plain:")}
    assert set(found) == expected | nonces and len(nonces) == 2
    assert all(ttl > 0 for ttl in found.values())
    assert 0 < found[keys.access_token("default", "wxplain")] <= 7200 - 300
