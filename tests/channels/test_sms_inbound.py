"""Twilio inbound webhooks through the SMS adapter: fixtures in, Inbounds or rejections out.

Table-driven (STYLE.md 5): each case names a fixture of channels/sms/fixtures/twilio and what the
adapter must make of it. State is the real Valkey fixture; media comes from the fake Twilio over
real HTTP.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from channels.base import InboundKind, Route, WebhookRejected, WebhookResult
from channels.sms.adapter import FLOOD_KEY, SmsAdapter, SmsContext
from channels.sms.fake_twilio import FakeTwilio, start_fake
from channels.sms.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, sandbox_settings
from channels.sms.testkit import dir_media_sink, load_form, twilio_request
from store.sms_state import RedisSmsState

PUBLIC = "http://127.0.0.1:8080"
INBOUND = Route("POST", "/sms/twilio", "twilio-inbound")
STATUS = Route("POST", "/sms/twilio/status", "twilio-status")
CITIZEN = "tel:+8613812345678"
WAIT_TEXT = "请稍候再发"


@pytest.fixture
async def fake(data_dir: Path) -> AsyncIterator[FakeTwilio]:
    runner, _, fake = await start_fake(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, data_dir / "sent.jsonl")
    yield fake
    await runner.cleanup()


@pytest.fixture
async def adapter(
    fake: FakeTwilio, redis_client: aioredis.Redis, data_dir: Path
) -> AsyncIterator[SmsAdapter]:
    settings = sandbox_settings(data_dir, fake.base_url)
    from dataclasses import replace

    settings = replace(settings, inbound_limit=3)
    adapter = SmsAdapter(
        settings,
        state=RedisSmsState(redis_client),
        media_sink=dir_media_sink(data_dir / "media"),
        catalogue_text=lambda key: WAIT_TEXT if key == FLOOD_KEY else key,
    )
    yield adapter
    await adapter.close()


async def parse(
    adapter: SmsAdapter, name: str, route: Route = INBOUND, url: str = PUBLIC, **subst: str
) -> WebhookResult:
    form = load_form(name, **subst)
    return await adapter.parse_webhook(route, twilio_request(url + route.path, form, SANDBOX_AUTH_TOKEN))


@dataclass
class Case:
    fixture: str
    kind: InboundKind
    text: str | None = None  # None: check only that it is non-empty
    event: str | None = None
    external_id: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("plain_text", InboundKind.TEXT, "路灯坏了", external_id="SM" + "1" * 32),
    Case("national_number", InboundKind.TEXT, "路灯坏了"),
    Case("unicode_emoji", InboundKind.TEXT, "小区门口的井盖丢了😡 请尽快处理👍 ＳＴＯＰ乱停车"),
    Case("long_1600", InboundKind.TEXT, None),
    Case("opt_out_type_stop", InboundKind.CONSENT, "", "opt_out", attrs={"opt_out_type": "STOP"}),
    Case("stop_keyword", InboundKind.CONSENT, "", "opt_out"),
    Case("mms_foreign_host", InboundKind.TEXT, "看图", attrs={"media_errors": "0:host not allowed"}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.fixture)
async def test_inbound_fixture(adapter: SmsAdapter, case: Case) -> None:
    result = await parse(adapter, case.fixture)
    assert result.answer is None and len(result.inbounds) == 1
    inbound = result.inbounds[0]
    assert (inbound.channel, inbound.sender, inbound.account) == ("sms", CITIZEN, "+15005550006")
    assert inbound.kind is case.kind and inbound.event == case.event
    if case.text is None:
        assert len(inbound.text) == 1600
    else:
        assert inbound.text == case.text
    if case.external_id:
        assert inbound.external_id == case.external_id
    for key, value in case.attrs.items():
        assert inbound.attrs[key] == value
    assert inbound.media == ()


async def test_opt_out_is_recorded_and_start_clears_it(
    adapter: SmsAdapter, redis_client: aioredis.Redis
) -> None:
    state = RedisSmsState(redis_client)
    await parse(adapter, "stop_keyword")
    assert await state.is_opted_out("default", CITIZEN)
    form = [(k, "start" if k == "Body" else v) for k, v in load_form("plain_text")]
    result = await adapter.parse_webhook(
        INBOUND, twilio_request(PUBLIC + INBOUND.path, form, SANDBOX_AUTH_TOKEN)
    )
    assert result.inbounds[0].event == "opt_in"
    assert not await state.is_opted_out("default", CITIZEN)


async def test_mms_media_downloaded_from_the_fake(
    adapter: SmsAdapter, fake: FakeTwilio, data_dir: Path
) -> None:
    photo = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 100
    fake.add_media("ME" + "a" * 32, photo, "image/jpeg")
    result = await parse(adapter, "mms_photo", media_base=fake.base_url)
    (inbound,) = result.inbounds
    assert inbound.text == "门口这个坑" and inbound.external_id.startswith("MM")
    (ref,) = inbound.media
    assert ref.content_type == "image/jpeg" and ref.size == len(photo)
    assert (data_dir / "media" / ref.media_id).read_bytes() == photo


async def test_mms_media_with_wrong_credentials_is_not_attached(
    adapter: SmsAdapter, fake: FakeTwilio, data_dir: Path
) -> None:
    fake.auth_token = "rotated"  # the fake now refuses our Basic auth
    fake.add_media("ME" + "a" * 32, b"x", "image/jpeg")
    (inbound,) = (await parse(adapter, "mms_photo", media_base=fake.base_url)).inbounds
    assert inbound.media == () and inbound.attrs["media_errors"] == "0:HTTP 401"


KEYWORDS = {
    "opt_out": [
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "退订",
        "TD",
        "T",
    ],
    "opt_in": ["START", "YES", "UNSTOP"],
    "help": ["HELP", "INFO", "帮助"],
}


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


VARIANTS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "full_width": full_width,
    "padded": lambda s: f"  {s.lower()}。 ",
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("event", "word"), [(e, w) for e, words in KEYWORDS.items() for w in words])
async def test_consent_keywords(adapter: SmsAdapter, event: str, word: str, variant: str) -> None:
    body = VARIANTS[variant](word)
    form = [(k, body if k == "Body" else v) for k, v in load_form("plain_text")]
    result = await adapter.parse_webhook(
        INBOUND, twilio_request(PUBLIC + INBOUND.path, form, SANDBOX_AUTH_TOKEN)
    )
    (inbound,) = result.inbounds
    assert (inbound.kind, inbound.event, inbound.text) == (InboundKind.CONSENT, event, "")


@pytest.mark.parametrize(
    "body", ["stop the noise at night", "T恤被偷了", "我要退订报纸的投诉", "help me", "YES路灯又坏了"]
)
async def test_keyword_inside_a_request_is_ticket_text(adapter: SmsAdapter, body: str) -> None:
    form = [(k, body if k == "Body" else v) for k, v in load_form("plain_text")]
    (inbound,) = (
        await adapter.parse_webhook(INBOUND, twilio_request(PUBLIC + INBOUND.path, form, SANDBOX_AUTH_TOKEN))
    ).inbounds
    assert inbound.kind is InboundKind.TEXT and inbound.text == unicodedata.normalize("NFC", body)


# --- rejections -------------------------------------------------------------------------------


async def test_missing_parameters_are_named(adapter: SmsAdapter) -> None:
    with pytest.raises(WebhookRejected) as err:
        await parse(adapter, "missing_from_and_sid")
    assert err.value.status == 400
    assert "MessageSid" in err.value.reason and "From" in err.value.reason


@pytest.mark.parametrize(
    ("mutation", "status"),
    [
        ("bad_signature", 403),
        ("no_signature", 403),
        ("param_added_after_signing", 403),
        ("signed_for_other_url", 403),
        ("other_account", 404),
    ],
)
async def test_rejected_requests(adapter: SmsAdapter, mutation: str, status: int) -> None:
    form = load_form("plain_text")
    url = PUBLIC + INBOUND.path
    if mutation == "bad_signature":
        request = twilio_request(url, form, SANDBOX_AUTH_TOKEN, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    elif mutation == "no_signature":
        request = twilio_request(url, form, SANDBOX_AUTH_TOKEN, signature="")
    elif mutation == "param_added_after_signing":
        signed = twilio_request(url, form, SANDBOX_AUTH_TOKEN)
        request = twilio_request(
            url, [*form, ("Extra", "1")], SANDBOX_AUTH_TOKEN, signature=signed.headers["x-twilio-signature"]
        )
    elif mutation == "signed_for_other_url":
        other = twilio_request("https://sms.example.gov.cn/sms/twilio", form, SANDBOX_AUTH_TOKEN)
        request = twilio_request(url, form, SANDBOX_AUTH_TOKEN, signature=other.headers["x-twilio-signature"])
    else:
        form = [(k, "AC" + "1" * 32 if k == "AccountSid" else v) for k, v in form]
        request = twilio_request(url, form, SANDBOX_AUTH_TOKEN)
    with pytest.raises(WebhookRejected) as err:
        await adapter.parse_webhook(INBOUND, request)
    assert err.value.status == status


async def test_twilio_docs_signature_vector() -> None:
    """The documented example (PROTOCOLS.md B.2), independent of our signing helper."""
    from twilio.request_validator import RequestValidator

    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert RequestValidator("12345").validate(url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    from channels.sms.simulator import sign

    assert sign("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def test_duplicate_message_sid_gives_same_external_id(adapter: SmsAdapter) -> None:
    first = await parse(adapter, "plain_text")
    second = await parse(adapter, "plain_text")
    assert first.inbounds[0].external_id == second.inbounds[0].external_id == "SM" + "1" * 32


# --- flood limit -------------------------------------------------------------------------------


async def test_flood_answers_once_then_drops_but_stop_gets_through(adapter: SmsAdapter) -> None:
    outcomes = []
    for n in range(6):
        form = [(k, f"SM{n:032d}" if k == "MessageSid" else v) for k, v in load_form("plain_text")]
        outcomes.append(
            await adapter.parse_webhook(
                INBOUND, twilio_request(PUBLIC + INBOUND.path, form, SANDBOX_AUTH_TOKEN)
            )
        )
    assert [len(r.inbounds) for r in outcomes] == [1, 1, 1, 0, 0, 0]
    assert outcomes[3].answer is not None and WAIT_TEXT.encode() in outcomes[3].answer.body
    for dropped in outcomes[4:]:
        assert dropped.answer is not None and b"<Message>" not in dropped.answer.body
        assert isinstance(dropped.context, SmsContext) and dropped.context.flood_dropped == 1
    stop = await parse(adapter, "stop_keyword")
    assert stop.inbounds[0].event == "opt_out"


# --- replies ----------------------------------------------------------------------------------


def test_render_reply_twiml(adapter: SmsAdapter) -> None:
    answer = adapter.render_reply(None, ["已受理，工单号 SN-261125-0042-7", "回复“查询”看进度 & <更多>"])
    assert answer.content_type == "text/xml" and answer.status == 200
    body = answer.body.decode()
    assert body.count("<Message>") == 2 and "SN-261125-0042-7" in body and "&amp; &lt;更多&gt;" in body
    empty = adapter.render_reply(None, []).body.decode()
    assert empty.endswith("<Response />") and "<Message" not in empty
