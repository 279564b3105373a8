"""The fixture corpus through the real parser: one table, one shared runner (STYLE.md 5).

Each ``channels/email/fixtures/*.eml`` has a hand-written entry in ``expectations.toml`` (text,
threading decision, whether an answer may be sent …). Threading by our Message-IDs uses the
real thread map on Valkey (store.mail_state), attachments go to a real directory media sink.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from channels.base import Inbound, InboundKind
from channels.email.loops import delivery_updates
from channels.email.parser import MailParser, analyse
from channels.email.quotes import strip_quoted
from channels.email.threading import message_ids, reply_references, subject_ticket_id, tagged_subject
from store.mail_state import MailState
from tests.channels.email_kit import (
    FIXTURES,
    OUR_MESSAGE_ID,
    OUR_TICKET,
    DirMediaSink,
    email_settings,
    expectations,
    fixture_bytes,
)

EXPECT = expectations()
NOW = dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)


def test_corpus_is_complete() -> None:
    names = {p.stem for p in FIXTURES.glob("*.eml")}
    assert len(names) >= 40
    assert names == set(EXPECT), (
        f"fixtures without expectations: {names - set(EXPECT)}; stale: {set(EXPECT) - names}"
    )


async def _parse(name: str, redis_client: aioredis.Redis, media_root: Path) -> Inbound:
    state = MailState(redis_client)
    await state.remember_thread(OUR_MESSAGE_ID, OUR_TICKET)
    parser = MailParser(
        email_settings(),
        DirMediaSink(media_root),
        ticket_prefix="SN",
        thread_lookup=state.ticket_for,
        clock=lambda: NOW,
    )
    return await parser.parse(fixture_bytes(name), account="hotline@sulai.test", via="imap")


def _answer(attrs: Any) -> str:
    if attrs["no_auto_reply"] == "1":
        return "no"
    return "no-ack" if attrs["ack_suppressed"] == "1" else "yes"


@pytest.mark.parametrize("name", sorted(EXPECT))
async def test_fixture(name: str, redis_client: aioredis.Redis, tmp_path: Path) -> None:
    want = EXPECT[name]
    inbound = await _parse(name, redis_client, tmp_path)
    a = inbound.attrs
    assert inbound.channel == "email" and inbound.account == "hotline@sulai.test"
    expected_sender = want["sender"] or "unknown@invalid"
    assert (
        inbound.sender
        == f"mailto:{expected_sender.rpartition('@')[0]}@{expected_sender.rpartition('@')[2].lower()}"
    )
    assert a["subject"] == want["subject"]
    assert "\n" not in a["subject"] and "\r" not in a["subject"]
    if "text" in want:
        assert inbound.text == want["text"]
    for piece in want.get("text_contains", []):
        assert piece in inbound.text
    assert a["thread_ticket_id"] == want["thread"]
    assert _answer(a) == want["answer"]
    assert (a["automated"] == "1") == want.get("automated", False)
    assert (a.get("charset_fallback") == "1") == want.get("charset_fallback", False)
    assert (a["quoted"] == "1") == want.get("quoted", False)
    assert (a.get("html_only") == "1") == want.get("html_only", False)
    assert [m.filename for m in inbound.media] == want.get("attachments", [])
    assert [m.filename for m in inbound.media if m.flagged] == want.get("flagged", [])
    dropped = a.get("attachments_dropped", "")
    assert (len(dropped.split("; ")) if dropped else 0) == want.get("dropped", 0)
    for ref in inbound.media:  # really stored, bytes intact
        assert (tmp_path / ref.media_id).stat().st_size == ref.size > 0
    if want.get("hashed_id"):
        assert inbound.external_id.startswith("sha256:")
    else:
        assert inbound.external_id == a["message_id"] != ""
    updates = delivery_updates(inbound)
    assert [u.address for u in updates if u.permanent_failure] == [
        f"mailto:{x}" for x in want.get("bounce_failed", [])
    ]
    assert [u.address for u in updates if not u.permanent_failure] == [
        f"mailto:{x}" for x in want.get("bounce_delayed", [])
    ]
    is_bounce = bool(want.get("bounce_failed") or want.get("bounce_delayed"))
    assert inbound.kind == (InboundKind.EVENT if is_bounce else InboundKind.EMAIL)
    if is_bounce:
        assert inbound.event == "delivery_report"
        assert {u.provider_id for u in updates} == {OUR_MESSAGE_ID}  # which of our mails bounced
    assert a["full_text"] or want.get("text") == ""  # the unstripped original is kept


def test_duplicate_message_id_same_external_id() -> None:
    s = email_settings()
    a = analyse(fixture_bytes("duplicate_message_id_a"), s)
    b = analyse(fixture_bytes("duplicate_message_id_b"), s)
    assert a.external_id == b.external_id == "dup-1@example.com"


def test_missing_message_id_hash_is_stable_and_ignores_server_headers() -> None:
    raw = fixture_bytes("no_message_id")
    as_stored = (
        b"Received: from mx by imap; Wed, 25 Nov 2026 15:03:00 +0800\r\nReturn-Path: <cao@example.com>\r\n"
        + raw
    )
    changed = raw.rstrip() + b"QQ==\r\n"  # one more base64 quantum: another body
    s = email_settings()
    first, again, stored = (analyse(r, s).external_id for r in (raw, raw, as_stored))
    assert first == again == stored
    assert analyse(changed, s).external_id != first


def test_smtp_null_envelope_sender_means_no_answer() -> None:
    raw = fixture_bytes("plain_new_request")
    assert analyse(raw, email_settings(), envelope_sender="<>").verdict.no_auto_reply
    assert not analyse(raw, email_settings(), envelope_sender="zhangwei@example.com").verdict.no_auto_reply


@pytest.mark.parametrize(
    ("text", "expected", "quoted"),
    [
        ("好的\n\n在 2026年11月25日 14:00，A <a@b.cn> 写道：\n> 旧", "好的", True),
        ("好的\n------------------&nbsp;原始邮件&nbsp;------------------\n发件人: x", "好的", True),
        ("好的\n-----原始邮件-----\n发件人：x\n发送时间：y\n收件人：z", "好的", True),
        ("OK\nOn Wed, Nov 25, 2026 at 2:00 PM A <a@b.cn> wrote:\n> old", "OK", True),
        ("> old\nnew", "new", True),
        ("我在黑板上写道：你好\n请处理", "我在黑板上写道：你好\n请处理", False),  # not a quote header
        ("From: 我自己\n这是正文", "From: 我自己\n这是正文", False),  # one From line is no header block
        ("> 全部都是引用", "> 全部都是引用", False),  # nothing would remain: keep the whole
    ],
)
def test_strip_quoted(text: str, expected: str, quoted: bool) -> None:
    result = strip_quoted(text)
    assert (result.text, result.quoted) == (expected, quoted)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: [SN-261125-0042-1] 已受理", "SN-261125-0042-1"),
        ("回复：［ＳＮ－２６１１２５－００４２－１］", "SN-261125-0042-1"),
        ("RE: 【sn 261125 0042 1】", "SN-261125-0042-1"),
        ("[SN-261125-0042-7] wrong check digit", None),
        ("路灯坏了 13800138000", None),  # a phone number is not an id
        ("[FOO] [SN-261125-0043-9]", "SN-261125-0043-9"),
    ],
)
def test_subject_ticket_id(subject: str, expected: str | None) -> None:
    assert subject_ticket_id(subject, "SN") == expected


def test_reply_headers_and_subject_tag() -> None:
    assert message_ids("<a@x> junk <b@y>\r\n <a@x>") == ["a@x", "b@y"]
    irt, refs = reply_references("c@z", "<a@x> <b@y>")
    assert irt == "<c@z>" and refs == "<a@x> <b@y> <c@z>"
    # A CR/LF smuggled in a citizen's Message-ID cannot leak into our headers.
    irt, refs = reply_references("c@z>\r\nBcc: x@evil", "<a@x>\r\nBcc: y@evil")
    assert "\n" not in irt + refs and "Bcc" not in irt + refs
    assert tagged_subject("SN-261125-0042-1", "已受理：路灯") == "[SN-261125-0042-1] 已受理：路灯"
    assert tagged_subject("SN-261125-0042-1", "Re: [SN-261125-0042-1] x") == "Re: [SN-261125-0042-1] x"
    # An id in running text is no token: the bracketed one is still added, for threading.
    assert tagged_subject("SN-261125-0042-1", "已受理：工单号 SN-261125-0042-1") == (
        "[SN-261125-0042-1] 已受理：工单号 SN-261125-0042-1"
    )
    assert tagged_subject(None, "a\r\nBcc: x@evil") == "a Bcc: x@evil"
