"""The SMTP listener, spoken to with the standard clients (smtplib in a thread, aiosmtplib).

Its contract: 550 for recipients that are not ours, 552 over the size limit, STARTTLS and AUTH
when configured, 250 only after ``deliver`` returned, 451 when ``deliver`` raised.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from channels.email.parser import MailParser
from channels.email.settings import EmailSettings
from channels.email.simulator import citizen_mail, send_mail
from gateway.smtp_listener import SmtpListener
from tests.channels.email_kit import (
    HOTLINE,
    DirMediaSink,
    Recorder,
    email_settings,
    fixture_bytes,
    self_signed_cert,
)


async def _listener(settings: EmailSettings, deliver: Recorder, media: Path, **kw: Any) -> SmtpListener:
    listener = SmtpListener(
        settings, MailParser(settings, DirMediaSink(media)), deliver, host="127.0.0.1", port=0, **kw
    )
    await listener.start()
    return listener


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[SmtpListener, Recorder]]:
    rec = Recorder()
    listener = await _listener(email_settings(max_message_bytes=200_000), rec, tmp_path)
    yield listener, rec
    await listener.close()


def _mail(**kw: Any) -> Any:
    base = {"mail_from": "zhangwei@example.com", "to": HOTLINE, "subject": "路灯", "text": "东风路路灯不亮"}
    return citizen_mail(**{**base, **kw})


async def test_mail_is_delivered_then_250(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    msg = _mail(attachments=[("现场照片.jpg", "image/jpeg", b"\xff\xd8jpeg\xff\xd9")])
    response = await send_mail("127.0.0.1", listener.port, msg)
    assert "stored" in response
    [(inbound, raw)] = rec.got
    assert inbound.text == "东风路路灯不亮" and inbound.attrs["subject"] == "路灯"
    assert inbound.sender == "mailto:zhangwei@example.com" and inbound.account == HOTLINE
    assert inbound.external_id == str(msg["Message-ID"]).strip("<>")
    assert inbound.attrs["via"] == "smtp" and inbound.attrs["envelope_sender"] == "zhangwei@example.com"
    assert [m.filename for m in inbound.media] == ["现场照片.jpg"]
    assert b"Subject:" in raw  # the raw mail is handed over for the record


async def test_unknown_recipient_550(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
        await send_mail("127.0.0.1", listener.port, _mail(to="someone-else@sulai.test"))
    assert err.value.recipients[0].code == 550
    assert rec.got == []


async def test_recipient_match_ignores_case(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    await send_mail("127.0.0.1", listener.port, _mail(to="HotLine@Sulai.Test"))
    assert len(rec.got) == 1


async def test_oversize_552_with_and_without_size_declaration(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    big = _mail(text="路灯" * 150_000)  # ~ 600 kB encoded, limit 200 kB

    def with_smtplib() -> None:  # smtplib declares SIZE= in MAIL FROM: refused up front
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as s:
            s.send_message(big)

    with pytest.raises(smtplib.SMTPSenderRefused) as err:
        await asyncio.to_thread(with_smtplib)
    assert err.value.smtp_code == 552

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False)
    async with client:  # no SIZE declared: refused after DATA
        await client.mail("zhangwei@example.com")
        await client.rcpt(HOTLINE)
        with pytest.raises(aiosmtplib.SMTPDataError) as data_err:
            await client.data(big.as_bytes())
    assert data_err.value.code == 552
    assert rec.got == []


async def test_250_only_after_deliver_returns(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    rec.gate = asyncio.Event()
    sending = asyncio.create_task(send_mail("127.0.0.1", listener.port, _mail()))
    await asyncio.wait_for(rec.entered.wait(), 5)
    await asyncio.sleep(0.2)
    assert not sending.done(), "the sender got an answer before the mail was stored"
    rec.gate.set()
    assert "stored" in await asyncio.wait_for(sending, 5)
    assert len(rec.got) == 1


async def test_451_when_deliver_fails_then_retry_succeeds(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    rec.fail = ConnectionError("store down")
    msg = _mail()
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await send_mail("127.0.0.1", listener.port, msg)
    assert err.value.code == 451 and listener.failed == 1
    rec.fail = None
    await send_mail("127.0.0.1", listener.port, msg)  # the sender's retry: same Message-ID
    assert rec.external_ids == [str(msg["Message-ID"]).strip("<>")]


async def test_null_sender_bounce_is_accepted_and_marked(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    raw = fixture_bytes("dsn_bounce_permanent")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False) as client:
        await client.sendmail("", [HOTLINE], raw)  # MAIL FROM:<>
    [(inbound, _)] = rec.got
    assert inbound.attrs["no_auto_reply"] == "1" and "null-sender" in inbound.attrs["loop_reasons"]
    assert inbound.attrs["bounce_failed"] == "nobody@example.net"


async def test_gbk_mail_over_smtp(plain: tuple[SmtpListener, Recorder]) -> None:
    listener, rec = plain
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False) as client:
        await client.sendmail("zhu@example.cn", [HOTLINE], fixture_bytes("gb2312_with_gbk_chars"))
    assert rec.got[0][0].text == "我叫朱镕基，住在堃园小区，楼道灯坏了。"


async def test_starttls_and_auth_required(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    settings = email_settings(
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        require_starttls=True,
        auth_required=True,
        auth_users={"relay": "pa55word"},
    )
    rec = Recorder()
    listener = await _listener(settings, rec, tmp_path)
    client_tls = ssl.create_default_context(cafile=str(cert))
    try:
        # Without STARTTLS: refused.
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, start_tls=False) as c:
            with pytest.raises(aiosmtplib.SMTPResponseException) as err:
                await c.mail("a@example.com")
            assert err.value.code == 530
        # TLS but no AUTH: refused.
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, tls_context=client_tls) as c:
            with pytest.raises(aiosmtplib.SMTPResponseException) as err:
                await c.mail("a@example.com")
            assert err.value.code == 530
        # Wrong password: refused.
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, tls_context=client_tls) as c:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                await c.login("relay", "wrong")
        # TLS and the right login: stored.
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, tls_context=client_tls) as c:
            await c.login("relay", "pa55word")
            await c.send_message(_mail())
        assert len(rec.got) == 1
    finally:
        await listener.close()


async def test_simulate_email_cli_sends_a_real_mail(
    plain: tuple[SmtpListener, Recorder], tmp_path: Path
) -> None:
    import argparse

    from gateway.cli_email import add_commands

    photo = tmp_path / "现场.jpg"
    photo.write_bytes(b"\xff\xd8photo\xff\xd9")
    listener, rec = plain
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["simulate", "email", "--from", "a@example.com", "--subject", "路灯", "--smtp", f"127.0.0.1:{listener.port}",
         "--attach", str(photo), "东风路的路灯坏了"]
    )  # fmt: skip
    assert await asyncio.to_thread(args.func, args) == 0
    [(inbound, _)] = rec.got
    assert inbound.sender == "mailto:a@example.com" and inbound.attrs["subject"] == "路灯"
    assert inbound.text == "东风路的路灯坏了" and [m.filename for m in inbound.media] == ["现场.jpg"]
