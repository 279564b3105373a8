"""The EmailAdapter sending through a real SMTP relay on loopback (channels.email.fake.MailSink):
headers, threading, UTF-8, no header injection from ticket text, SMTP errors -> SendErrorCode."""

from __future__ import annotations

import email
import socket
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from channels.base import Outbound, Purpose, RenderedMessage, SendError, SendErrorCode, verify_adapter
from channels.email.fake import MailSink, start_sink
from channels.email.outbound import EmailAdapter
from channels.email.parser import analyse
from channels.email.settings import EmailSettings, RelaySettings, sandbox_settings
from tests.channels.email_kit import email_settings

TICKET = "SN-261125-0042-1"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[MailSink]:
    s = await start_sink(tmp_path / "sandbox" / "mail-sent")
    yield s
    await s.close()


def _adapter(sink: MailSink, tmp_path: Path) -> EmailAdapter:
    return EmailAdapter(sandbox_settings(tmp_path, relay_port=sink.port))


def _outbound(
    purpose: Purpose = Purpose.TICKET_CREATED, recipient: str = "mailto:zhangwei@example.com", **attrs: str
) -> Outbound:
    return Outbound(
        id="out-1",
        tenant="default",
        recipient=recipient,
        purpose=purpose,
        key="ticket_created",
        ticket_id=TICKET,
        attrs=attrs,
    )


def _read(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_ack_headers_threading_and_eml_file(sink: MailSink, tmp_path: Path) -> None:
    adapter = verify_adapter(_adapter(sink, tmp_path))
    assert adapter.routes() == () and adapter.render_reply(None, ["x"]).body == b""
    result = await adapter.send(
        _outbound(in_reply_to="a1@example.com", references="a0@example.com"),
        RenderedMessage(text="您好，已受理。\n\n请告诉我们地址。", subject="已受理：路灯"),
    )
    [sent] = sink.received
    assert sent.rcpt_tos == ("zhangwei@example.com",) and sent.mail_from == "hotline@sulai.test"
    assert sent.path.parent == tmp_path / "sandbox" / "mail-sent" and sent.path.suffix == ".eml"
    msg = _read(sent.path)
    assert msg["Delivered-To"] == "zhangwei@example.com"  # written by the sink like a real MDA
    assert str(msg["Message-ID"]) == f"<{result.provider_id}>" and result.provider_id.endswith("@sulai.test")
    assert TICKET in result.provider_id and result.path == "smtp"
    assert msg["Subject"] == f"[{TICKET}] 已受理：路灯"
    assert b"Subject: [SN-261125-0042-1] " in sent.raw  # the token stays ASCII for IMAP SEARCH
    assert msg["In-Reply-To"] == "<a1@example.com>"
    assert msg["References"] == "<a0@example.com> <a1@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert (
        plain.get_content_charset() == "utf-8"
        and plain.get_content().replace("\r\n", "\n").strip() == "您好，已受理。\n\n请告诉我们地址。"
    )
    assert "<p>您好，已受理。</p>" in html.get_content()
    # Our own parser reads our mail back as automatic: a loop cannot start from our side.
    assert analyse(sent.raw, EmailSettings()).verdict.no_auto_reply


async def test_staff_reply_is_not_marked_automatic(sink: MailSink, tmp_path: Path) -> None:
    await _adapter(sink, tmp_path).send(
        _outbound(Purpose.STAFF_REPLY), RenderedMessage(text="处理结果", subject="答复")
    )
    msg = _read(sink.received[0].path)
    assert msg["Auto-Submitted"] is None and msg["Subject"] == f"[{TICKET}] 答复"


async def test_no_header_injection_from_ticket_text(sink: MailSink, tmp_path: Path) -> None:
    evil = "路灯\r\nBcc: victim@example.com\r\n\r\nfake body"
    await _adapter(sink, tmp_path).send(
        _outbound(in_reply_to="x@y>\r\nBcc: victim2@example.com"), RenderedMessage(text=evil, subject=evil)
    )
    [sent] = sink.received
    assert sent.rcpt_tos == ("zhangwei@example.com",)  # nobody else got it
    msg = _read(sent.path)
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"]) and str(msg["Subject"]).startswith(f"[{TICKET}] 路灯 Bcc:")
    assert "victim2" not in str(msg["In-Reply-To"] or "")


async def test_bad_recipient_is_rejected_before_sending(sink: MailSink, tmp_path: Path) -> None:
    with pytest.raises(SendError) as err:
        await _adapter(sink, tmp_path).send(
            _outbound(recipient="mailto:a@example.com,b@example.com"), RenderedMessage(text="x", subject="y")
        )
    assert err.value.code == SendErrorCode.REJECTED and sink.received == []


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("reject", SendErrorCode.UNREACHABLE),  # 550 user unknown
        ("tempfail", SendErrorCode.TEMPORARY),  # 451 at RCPT
        ("data554", SendErrorCode.REJECTED),
        ("data451", SendErrorCode.TEMPORARY),
    ],
)
async def test_smtp_errors_map_to_the_closed_set(
    sink: MailSink, tmp_path: Path, setup: str, code: SendErrorCode
) -> None:
    if setup == "reject":
        sink.reject.add("zhangwei@example.com")
    elif setup == "tempfail":
        sink.tempfail.add("zhangwei@example.com")
    else:
        sink.data_response = "554 5.6.0 content rejected" if setup == "data554" else "451 4.3.0 busy"
    with pytest.raises(SendError) as err:
        await _adapter(sink, tmp_path).send(_outbound(), RenderedMessage(text="x", subject="y"))
    assert err.value.code == code and err.value.retryable == (code == SendErrorCode.TEMPORARY)


async def test_relay_down_is_temporary() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = EmailSettings(relay=RelaySettings(host="127.0.0.1", port=port, security="none", timeout=3))
    with pytest.raises(SendError) as err:
        await EmailAdapter(settings).send(_outbound(), RenderedMessage(text="x", subject="y"))
    assert err.value.code == SendErrorCode.TEMPORARY


def test_secrets_listed() -> None:
    s = email_settings(auth_users={"relay": "listener-pw"})
    adapter = EmailAdapter(EmailSettings(relay=RelaySettings(password="relay-pw"), listener=s.listener))
    assert set(adapter.secrets()) == {"relay-pw", "listener-pw"}
