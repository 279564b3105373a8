"""WeChat pushes: every message and event type in every encryption mode, and every rejection.

Table-driven (STYLE.md 5): each case names a fixture in channels/wechat/fixtures/ and what the
adapter must make of it. The expectations are written from WeChat's documented fields, not
copied from the adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from channels.base import InboundKind, Location, Route, WebhookRejected, WebhookRequest
from channels.wechat.crypto import signature
from tests.channels.wechat_kit import KEY_A, KEY_OTHER, MODES, NOW, Kit, fixture, make_kit

ADDR = {
    "plaintext": "wechat:wxplain:oCitizen001",
    "compatible": "wechat:wxcompat:oCitizen001",
    "safe": "wechat:wxsafe:oCitizen001",
}
JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
AMR = b"#!AMR\nfake-voice"

# fixture -> expected Inbound fields (None: no Inbound), delivery, and address facts afterwards.
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "text_message.xml",
        {
            "kind": InboundKind.TEXT,
            "text": "路灯坏了，在幸福路口",
            "external_id": "wx:24000000000000001",
            "window": True,
        },
    ),
    (
        "image_message.xml",
        {
            "kind": InboundKind.IMAGE,
            "media": [JPEG],
            "attrs": {"pic_url": "http://mmbiz.qpic.cn/pic1"},
            "window": True,
        },
    ),
    (
        "image_media_expired.xml",
        {"kind": InboundKind.IMAGE, "media": [], "attrs_has": ["media_error"], "window": True},
    ),
    (
        "voice_with_recognition.xml",
        {"kind": InboundKind.VOICE, "text": "下水道堵了", "media": [AMR], "attrs": {"format": "amr"}},
    ),
    ("voice_without_recognition.xml", {"kind": InboundKind.VOICE, "text": "", "media": [AMR]}),
    (
        "video_message.xml",
        {"kind": InboundKind.VIDEO, "media": [b"mp4-bytes"], "attrs": {"thumb_media_id": "THUMB_1"}},
    ),
    (
        "shortvideo_message.xml",
        {"kind": InboundKind.VIDEO, "media": [b"mp4-bytes"], "attrs": {"thumb_media_id": "THUMB_2"}},
    ),
    (
        "location_message.xml",
        {
            "kind": InboundKind.LOCATION,
            "location": Location(31.2304, 121.4737, "幸福路与和平街交叉口"),
            "last_location": (31.2304, 121.4737),
        },
    ),
    (
        "link_message.xml",
        {
            "kind": InboundKind.LINK,
            "text": "噪音扰民\n夜间施工\nhttp://example.com/a",
            "attrs": {"url": "http://example.com/a"},
        },
    ),
    (
        "subscribe_plain.xml",
        {
            "kind": InboundKind.EVENT,
            "event": "subscribe",
            "entry_point": None,
            "external_id": "wx:oCitizen001:1764000000:subscribe",
        },
    ),
    (
        "subscribe_with_scene.xml",
        {
            "kind": InboundKind.EVENT,
            "event": "subscribe",
            "entry_point": "grid:0421",
            "attrs": {"intake": "citizen", "grid": "0421"},
        },
    ),
    (
        "subscribe_enterprise.xml",
        {
            "kind": InboundKind.EVENT,
            "event": "subscribe",
            "entry_point": "enterprise",
            "attrs": {"intake": "enterprise"},
        },
    ),
    (
        "scan_follower.xml",
        {
            "kind": InboundKind.EVENT,
            "event": "scan",
            "entry_point": "centre:east",
            "attrs": {"centre": "east"},
            "external_id": "wx:oCitizen001:1764000000:SCAN",
        },
    ),
    ("unsubscribe.xml", {"kind": InboundKind.EVENT, "event": "unsubscribe", "unreachable": "unsubscribed"}),
    (
        "click_menu.xml",
        {
            "kind": InboundKind.EVENT,
            "event": "click",
            "attrs": {"click_key": "my_tickets", "command": "my_tickets"},
        },
    ),
    (
        "view_menu.xml",
        {"kind": InboundKind.EVENT, "event": "view", "attrs": {"url": "http://example.com/guide"}},
    ),
    (
        "location_event.xml",
        {"kind": InboundKind.EVENT, "event": "location", "last_location": (31.2304, 121.4737)},
    ),
    ("template_send_finished.xml", {"inbound": None, "delivery": ("200163836", "delivered", False)}),
    ("template_send_blocked.xml", {"inbound": None, "delivery": ("200163840", "failed", True)}),
    ("subscribe_msg_popup.xml", {"inbound": None, "consent": {"SUB_STATUS": True, "SUB_OTHER": False}}),
    ("subscribe_msg_sent.xml", {"inbound": None, "delivery": ("1700827132819554304", "delivered", False)}),
    ("unknown_event.xml", {"inbound": None}),
]

REJECTIONS: list[tuple[str, str, int, str]] = [
    # (fixture, mode, status, words in the reason)
    ("malformed.xml", "plaintext", 400, "malformed"),
    ("malformed.xml", "safe", 400, "malformed"),
    ("xxe_external_entity.xml", "plaintext", 400, "DOCTYPE"),
    ("xxe_external_entity.xml", "safe", 400, "DOCTYPE"),
    ("billion_laughs.xml", "plaintext", 400, "DOCTYPE"),
    ("billion_laughs.xml", "compatible", 400, "DOCTYPE"),
    ("missing_sender.xml", "plaintext", 400, "FromUserName"),
]


@pytest.fixture
async def kit(redis_client: aioredis.Redis, tmp_path: Path) -> Any:
    async with make_kit(redis_client, tmp_path) as k:
        k.fake.add_media("MEDIA_IMG_1", JPEG, "image/jpeg")
        k.fake.add_media("MEDIA_VOICE_1", AMR, "audio/amr")
        k.fake.add_media("MEDIA_VIDEO_1", b"mp4-bytes", "video/mp4")
        yield k


async def check_case(kit: Kit, mode: str, name: str, want: dict[str, Any]) -> None:
    result = await kit.push(mode, fixture(name))
    address = ADDR[mode]
    if want.get("inbound", True) is None:
        assert result.inbounds == ()
    else:
        (inbound,) = result.inbounds
        assert inbound.sender == address and inbound.channel == "wechat" and inbound.account == "gh_test"
        assert inbound.received_at.timestamp() == NOW
        for attr in ("kind", "text", "event", "entry_point", "external_id", "location"):
            if attr in want:
                assert getattr(inbound, attr) == want[attr], attr
        for k, v in want.get("attrs", {}).items():
            assert inbound.attrs[k] == v, k
        for k in want.get("attrs_has", []):
            assert inbound.attrs[k]
        if "media" in want:
            assert [kit.shelf.items[m.media_id] for m in inbound.media] == want["media"]
    if "delivery" in want:
        (update,) = result.deliveries
        assert (update.provider_id, update.status, update.permanent_failure) == want["delivery"]
    else:
        assert result.deliveries == ()
    if "unreachable" in want:
        assert await kit.state.unreachable("default", address) == want["unreachable"]
    if "last_location" in want:
        got = await kit.state.last_location("default", address)
        assert got is not None and (got.latitude, got.longitude) == want["last_location"]
    for template_id, accepted in want.get("consent", {}).items():
        assert await kit.state.take_consent("default", address, template_id) is accepted
    if want.get("window"):
        window = (48 * 3600, 5)
        assert await kit.state.claim_custom("default", address, NOW + 60, window, (60, 3))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "want"), CASES, ids=[c[0] for c in CASES])
async def test_push(kit: Kit, mode: str, name: str, want: dict[str, Any]) -> None:
    await check_case(kit, mode, name, want)


@pytest.mark.parametrize(
    ("name", "mode", "status", "reason"), REJECTIONS, ids=[f"{r[0]}-{r[1]}" for r in REJECTIONS]
)
async def test_bad_payload_rejected(kit: Kit, name: str, mode: str, status: int, reason: str) -> None:
    body = fixture(name)
    sim = kit.simulator(mode)
    if mode == "plaintext":
        query, raw = sim.sign("<xml><FromUserName>o</FromUserName></xml>")
        raw = body.encode()
    else:
        # Encrypt the hostile payload itself, so it is only seen after decryption.
        assert sim.crypto is not None
        query, _ = sim.sign("<xml><FromUserName>o</FromUserName></xml>")
        envelope = sim.crypto.encrypt_message(body, query["nonce"], query["timestamp"])
        encrypt = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        query["msg_signature"] = signature(sim.token, query["timestamp"], query["nonce"], encrypt)
        raw = f"<xml><ToUserName>gh_test</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    with pytest.raises(WebhookRejected) as err:
        await kit.post(mode, query, raw)
    assert err.value.status == status and reason in err.value.reason


def _tamper(query: dict[str, str], key: str) -> dict[str, str]:
    value = query[key]
    return {**query, key: ("0" if value[0] != "0" else "1") + value[1:]}


@pytest.mark.parametrize("mode", MODES)
async def test_bad_signature(kit: Kit, mode: str) -> None:
    query, body = kit.simulator(mode).sign(fixture("text_message.xml"))
    with pytest.raises(WebhookRejected) as err:
        await kit.post(mode, _tamper(query, "signature"), body)
    assert (err.value.status, err.value.reason) == (403, "bad signature")


@pytest.mark.parametrize("mode", ["compatible", "safe"])
async def test_bad_msg_signature(kit: Kit, mode: str) -> None:
    query, body = kit.simulator(mode).sign(fixture("text_message.xml"))
    with pytest.raises(WebhookRejected) as err:
        await kit.post(mode, _tamper(query, "msg_signature"), body)
    assert (err.value.status, err.value.reason) == (403, "bad msg_signature")


async def test_wrong_appid_inside_ciphertext(kit: Kit) -> None:
    # The right key, but the ciphertext names another AppID.
    with pytest.raises(WebhookRejected) as err:
        await kit.push("safe", fixture("text_message.xml"), appid="wxintruder")
    assert err.value.status == 403 and "AppID" in err.value.reason


async def test_unknown_key_cannot_decrypt(kit: Kit) -> None:
    with pytest.raises(WebhookRejected) as err:
        await kit.push("safe", fixture("text_message.xml"), aes_key=KEY_OTHER)
    assert (err.value.status, err.value.reason) == (403, "cannot decrypt")


async def test_previous_key_accepted_and_reply_uses_it(kit: Kit) -> None:
    sim = kit.simulator("safe", aes_key=KEY_A)  # the previous key of the safe account
    result = await kit.push("safe", fixture("text_message.xml"), aes_key=KEY_A)
    assert result.inbounds[0].text == "路灯坏了，在幸福路口"
    answer = kit.adapter.render_reply(result.context, ["已受理，工单号 SN-261125-0042-7"])
    assert answer.content_type == "application/xml" and b"<Encrypt>" in answer.body
    assert sim._read(200, answer.body, 1).text == "已受理，工单号 SN-261125-0042-7"
    current = kit.simulator("safe")  # the current key cannot open a reply sealed with the old one
    with pytest.raises(Exception):  # noqa: B017 - any failure to decrypt will do
        current._read(200, answer.body, 1)


@pytest.mark.parametrize("skew", [-301, 301])
async def test_stale_timestamp(kit: Kit, skew: int) -> None:
    sim = kit.simulator("plaintext")
    query, body = sim.sign(fixture("text_message.xml"), timestamp=int(kit.clock.now) + skew)
    with pytest.raises(WebhookRejected) as err:
        await kit.post("plaintext", query, body)
    assert err.value.status == 403 and "timestamp" in err.value.reason


async def test_nonce_replayed_with_other_body_rejected(kit: Kit) -> None:
    sim = kit.simulator("plaintext")
    query, body = sim.sign(fixture("text_message.xml"), nonce="12345")
    await kit.post("plaintext", query, body)
    # Identical re-delivery (WeChat's own retry) passes on to the intake's dedupe.
    again = await kit.post("plaintext", query, body)
    assert again.inbounds[0].external_id == "wx:24000000000000001"
    # The captured signature with another body is a replay attack: plaintext signatures do not
    # cover the body, so only the nonce stops it.
    forged = fixture("text_message.xml").replace("路灯坏了", "forged").encode()
    with pytest.raises(WebhookRejected) as err:
        await kit.post("plaintext", query, forged)
    assert err.value.status == 403 and "nonce" in err.value.reason


async def test_oversized_body(kit: Kit) -> None:
    sim = kit.simulator("plaintext")
    big = fixture("text_message.xml").replace("路灯坏了", "路" * 70000)
    query, body = sim.sign(big)
    with pytest.raises(WebhookRejected) as err:
        await kit.post("plaintext", query, body)
    assert err.value.status == 413


async def test_plaintext_push_to_safe_account_refused(kit: Kit) -> None:
    sim = kit.simulator("safe")
    sim.mode = "plaintext"
    query, body = sim.sign(fixture("text_message.xml"))
    with pytest.raises(WebhookRejected) as err:
        await kit.post("safe", query, body)
    assert err.value.status == 403 and "safe mode" in err.value.reason


async def test_push_for_another_account_refused(kit: Kit) -> None:
    xml = fixture("text_message.xml").replace("gh_test", "gh_other")
    with pytest.raises(WebhookRejected) as err:
        await kit.push("plaintext", xml)
    assert err.value.status == 403 and "ToUserName" in err.value.reason


async def test_url_verification_official_vector(redis_client: aioredis.Redis, tmp_path: Path) -> None:
    # PROTOCOLS.md A.1: Token AAAAA, timestamp 1714036504, nonce 1514711492.
    raw = {"accounts": [{"name": "v", "account_id": "gh_v", "appid": "wxv", "secret": "s", "token": "AAAAA"}]}
    async with make_kit(redis_client, tmp_path, **raw) as kit:
        kit.clock.now = 1714036504 + 10
        query = {
            "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "timestamp": "1714036504",
            "nonce": "1514711492",
            "echostr": "5969870826466476535",
        }
        path = "/wechat/v"
        req = WebhookRequest("GET", path, "http://x" + path, query, {}, b"")
        result = await kit.adapter.parse_webhook(Route("GET", path, "v"), req)
        assert result.answer is not None and result.answer.body == b"5969870826466476535"
        with pytest.raises(WebhookRejected):
            bad = WebhookRequest("GET", path, "http://x" + path, {**query, "nonce": "1514711493"}, {}, b"")
            await kit.adapter.parse_webhook(Route("GET", path, "v"), bad)


@pytest.mark.parametrize("mode", MODES)
async def test_reply_rendering(kit: Kit, mode: str) -> None:
    sim = kit.simulator(mode)
    result = await kit.push(mode, fixture("text_message.xml"))
    answer = kit.adapter.render_reply(result.context, ["第一句", "第二句 ]]> 还在"])
    reply = sim._read(answer.status, answer.body, 1)
    assert reply.text == "第一句\n第二句 ]]> 还在"
    assert (
        reply.xml is not None
        and reply.xml["ToUserName"] == "oCitizen001"
        and reply.xml["FromUserName"] == "gh_test"
    )
    assert (b"<Encrypt>" in answer.body) is (mode != "plaintext")
    assert kit.adapter.render_reply(result.context, []).body == b"success"


async def test_unsubscribe_then_subscribe_clears_the_mark(kit: Kit) -> None:
    await kit.push("plaintext", fixture("unsubscribe.xml"))
    assert await kit.state.unreachable("default", ADDR["plaintext"]) == "unsubscribed"
    await kit.push("plaintext", fixture("subscribe_plain.xml").replace("1764000000", "1764000100"))
    assert await kit.state.unreachable("default", ADDR["plaintext"]) == ""


async def test_consent_change_revokes(kit: Kit) -> None:
    await kit.push("plaintext", fixture("subscribe_msg_popup.xml"))
    await kit.push("plaintext", fixture("subscribe_msg_change.xml"))
    assert await kit.state.take_consent("default", ADDR["plaintext"], "SUB_STATUS") is False


async def test_unknown_path_is_404(kit: Kit) -> None:
    req = WebhookRequest("POST", "/wechat/nope", "http://x/wechat/nope", {}, {}, b"<xml/>")
    with pytest.raises(WebhookRejected) as err:
        await kit.adapter.parse_webhook(Route("POST", "/wechat/nope", "n"), req)
    assert err.value.status == 404


async def test_contract_and_secrets_stay_out_of_logs(kit: Kit, caplog: pytest.LogCaptureFixture) -> None:
    from channels.base import verify_adapter

    verify_adapter(kit.adapter)
    caplog.set_level("DEBUG")
    for mode in MODES:
        await kit.push(mode, fixture("image_media_expired.xml"))  # logs a warning about the media
        query, _ = kit.simulator(mode).sign("<xml><FromUserName>o</FromUserName></xml>")
        with pytest.raises(WebhookRejected):
            await kit.post(mode, query, fixture("malformed.xml").encode())
    secrets = list(kit.adapter.secrets())
    assert len(secrets) == 3 * 2 + 2 + 1  # secret + token each; the compat key; the safe pair
    assert caplog.records and not any(s in caplog.text for s in secrets)


async def test_long_reply_cut_to_wechat_byte_limit(kit: Kit) -> None:
    result = await kit.push("plaintext", fixture("text_message.xml"))
    answer = kit.adapter.render_reply(result.context, ["办" * 1000])  # 3000 bytes of UTF-8
    text = kit.simulator("plaintext")._read(200, answer.body, 1).text
    assert text is not None and text.endswith("…") and len(text.encode()) <= 2048
    assert text[:-1] == "办" * len(text[:-1]) and len(text) == (2048 - 3) // 3 + 1
