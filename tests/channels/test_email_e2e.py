"""End to end through the real gateway parts: SMTP listener → parser → intake (engine, store) →
outbox → dispatcher → EmailAdapter → a loopback relay (the mail sink); IMAP from a real Dovecot.

Everything is real and in one process (Gateway.create on the Valkey fixture); mails go in by
SMTP with aiosmtplib and by IMAP APPEND, answers are read back from the sink as .eml files.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from channels.base import Inbound
from channels.email.fake import MailSink, start_sink
from channels.email.simulator import citizen_mail, send_mail
from gateway.components import Gateway
from gateway.config import settings_from_mapping
from store.model import TicketStatus
from tests.channels.email_kit import HOTLINE
from tests.channels.test_email_imap import append, flags
from tests.dovecot import PASSWORD, USER, Dovecot

CITIZEN = "zhangwei@example.com"
FULL_REQUEST = "东风路与建设路交叉口的路灯坏了三天，晚上很黑。地址：东风路18号门口。电话13812345678。"


@dataclass
class Running:
    gw: Gateway
    sink: MailSink
    smtp_port: int

    async def mail(self, msg: EmailMessage) -> str:
        return await send_mail("127.0.0.1", self.smtp_port, msg)

    async def tickets(self) -> list[str]:
        ids, _ = await self.gw.store.list_tickets("default", "citizen", f"mailto:{CITIZEN}")
        return ids

    def answers(self) -> list[EmailMessage]:
        out = []
        for sunk in self.sink.received:
            msg = email.message_from_bytes(sunk.raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out


async def _until(cond: Callable[[], Any], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(0.05)


async def _start(
    redis: aioredis.Redis,
    data_dir: Path,
    sink: MailSink,
    dovecot: Dovecot | None = None,
    closed_reply: str = "reopen",
) -> Running:
    raw_email: dict[str, Any] = {
        "addresses": [HOTLINE],
        "domain": "sulai.test",
        "relay": {"host": "127.0.0.1", "port": sink.port, "security": "none"},
    }
    if dovecot is not None:
        raw_email["imap"] = [
            {"name": "hotline", "host": "127.0.0.1", "port": dovecot.port, "tls": False, "user": USER,
             "password": PASSWORD, "poll_seconds": 0.3, "idle": False},
        ]  # fmt: skip
    settings = settings_from_mapping(
        {
            "data_dir": str(data_dir),
            "smtp": {"port": 0},
            "tenant": {"quiet_hours": "", "closed_reply": closed_reply},
            "email": raw_email,
        },
        env={},
    )
    gw = await Gateway.create(settings, redis, sandbox=False)
    assert gw.email is not None, "serve wires the email channel from the [email] table"
    addresses = await gw.start_roles({"smtp", "imap", "worker"})
    return Running(gw, sink, int(addresses["smtp"].rpartition(":")[2]))


@pytest.fixture
async def sink(data_dir: Path) -> AsyncIterator[MailSink]:
    s = await start_sink(data_dir / "sandbox" / "mail-sent")
    yield s
    await s.close()


@pytest.fixture
async def running(redis_client: aioredis.Redis, data_dir: Path, sink: MailSink) -> AsyncIterator[Running]:
    r = await _start(redis_client, data_dir, sink)
    yield r
    await r.gw.close()


@pytest.fixture
def dovecot() -> AsyncIterator[Dovecot] | Any:
    server = Dovecot()
    server.start()
    yield server
    server.remove()


async def _first_mail_without_address(running: Running) -> tuple[EmailMessage, list[EmailMessage]]:
    first = citizen_mail(
        mail_from=CITIZEN, to=HOTLINE, subject="路灯坏了", text="我家门口的路灯坏了，晚上很黑。"
    )
    await running.mail(first)
    await _until(lambda: len(running.sink.received) >= 1)
    await asyncio.sleep(0.5)  # anything else the turn queued would be out by now
    return first, running.answers()


async def test_missing_details_asked_in_one_mail(running: Running) -> None:
    _, asks = await _first_mail_without_address(running)
    assert len(asks) == 1


async def test_missing_details_then_reply_quoting_us_files_ticket(running: Running) -> None:
    first, asks = await _first_mail_without_address(running)
    assert asks, "no answer asking for the missing details"
    for ask in asks:
        assert ask["To"] == CITIZEN and ask["In-Reply-To"] == first["Message-ID"]
        assert ask["Auto-Submitted"] == "auto-replied"
    assert await running.tickets() == []
    ask = asks[0]

    # The citizen answers everything at once, quoting our mail the way Gmail-zh does.
    quoted = "\n".join("> " + line for line in ask.get_body(("plain",)).get_content().splitlines())  # type: ignore[union-attr]
    reply = citizen_mail(
        mail_from=CITIZEN,
        to=HOTLINE,
        subject=f"Re: {ask['Subject']}",
        text=f"地址：东风路18号门口。电话13812345678。\n\n在 2026年11月25日周三 14:00，速来办 <{HOTLINE}> 写道：\n{quoted}\n",
        in_reply_to=str(ask["Message-ID"]),
        references=[str(first["Message-ID"]), str(ask["Message-ID"])],
    )
    await running.mail(reply)
    await _until(lambda: len(running.sink.received) > len(asks))
    [ticket_id] = await running.tickets()
    ticket = await running.gw.store.get_ticket("default", ticket_id)
    assert ticket is not None and "东风路18号" in ticket.location_text
    assert "写道" not in ticket.description  # the quoted history stayed out of the ticket
    # …and both mails, quoted history included, are kept on the ticket as their originals.
    originals = [a for a in ticket.attachments if a.content_type == "message/rfc822"]
    assert len(originals) == 2
    kept = [await running.gw.media.read(a.media_id) for a in originals]
    assert sorted(len(raw) for raw in kept) == sorted(a.size for a in originals)
    bodies = [
        email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for raw in kept
    ]
    assert any("写道" in body and "> " in body for body in bodies)
    answer = running.answers()[len(asks)]
    assert f"[{ticket_id}]" in str(answer["Subject"])
    assert answer["In-Reply-To"] == reply["Message-ID"]
    # Our answer's Message-ID is in the thread map: a reply to it threads to the ticket.
    assert await running.gw.email.state.ticket_for([str(answer["Message-ID"]).strip("<>")]) == ticket_id


async def test_vacation_reply_to_our_ack_creates_and_sends_nothing(
    running: Running, redis_client: aioredis.Redis
) -> None:
    first = citizen_mail(mail_from=CITIZEN, to=HOTLINE, subject="路灯坏了", text="路灯坏了。")
    await running.mail(first)
    await _until(lambda: len(running.sink.received) >= 1)
    await asyncio.sleep(0.5)
    sent_before = len(running.sink.received)
    ask = running.answers()[0]
    state_before = await redis_client.hgetall(f"sulai:{{default}}:v1:conv:mailto:{CITIZEN}")
    vacation = citizen_mail(
        mail_from=CITIZEN,
        to=HOTLINE,
        subject=f"自动回复: {ask['Subject']}",
        text="我正在休假，11月30日回来。",
        in_reply_to=str(ask["Message-ID"]),
        headers={"Auto-Submitted": "auto-replied"},
    )
    await running.mail(vacation)
    await asyncio.sleep(1.0)
    assert len(running.sink.received) == sent_before  # nothing sent
    assert await running.tickets() == []  # nothing filed
    assert await redis_client.hgetall(f"sulai:{{default}}:v1:conv:mailto:{CITIZEN}") == state_before


async def test_same_mail_by_smtp_and_imap_files_one_ticket(
    redis_client: aioredis.Redis, data_dir: Path, sink: MailSink, dovecot: Dovecot
) -> None:
    r = await _start(redis_client, data_dir, sink, dovecot)
    try:
        msg = citizen_mail(mail_from=CITIZEN, to=HOTLINE, subject="路灯坏了", text=FULL_REQUEST)
        await r.mail(msg)
        await _until(lambda: len(sink.received) >= 1)
        await append(dovecot, [msg.as_bytes()])
        poller = r.gw.email.pollers[0]
        await _until(lambda: poller.delivered >= 1)
        await asyncio.sleep(0.5)
        assert len(await r.tickets()) == 1
        assert len(sink.received) == 1  # one acknowledgement
        assert all(b"\\Seen" in f for f in (await flags(dovecot)).values())
    finally:
        await r.gw.close()


async def test_killed_between_store_and_imap_flag_still_one_ticket(
    redis_client: aioredis.Redis, data_dir: Path, sink: MailSink, dovecot: Dovecot
) -> None:
    first = await _start(redis_client, data_dir, sink, dovecot)
    poller = first.gw.email.pollers[0]
    stored: list[str] = []

    async def store_then_die(inbound: Inbound, raw: bytes) -> None:
        await first.gw.email.deliver(inbound, raw)  # the ticket is filed …
        stored.append(inbound.external_id)
        poller._stop.set()  # … and this process dies before the IMAP flag
        assert poller._client is not None
        poller._client.shutdown()

    poller.deliver = store_then_die
    await append(
        dovecot,
        [citizen_mail(mail_from=CITIZEN, to=HOTLINE, subject="路灯坏了", text=FULL_REQUEST).as_bytes()],
    )
    await _until(lambda: len(stored) == 1)
    await first.gw.close()
    assert all(b"\\Seen" not in f for f in (await flags(dovecot)).values())
    assert len(await first.tickets()) == 1

    second = await _start(redis_client, data_dir, sink, dovecot)  # restarted
    try:
        await _until(lambda: second.gw.email.pollers[0].delivered >= 1)
        assert all(b"\\Seen" in f for f in (await flags(dovecot)).values())
        await _until(lambda: len(sink.received) >= 1)
        await asyncio.sleep(0.5)
        assert len(await second.tickets()) == 1
        assert len(sink.received) == 1  # and one acknowledgement, not two
    finally:
        await second.gw.close()


async def test_permanent_bounce_marks_address_unreachable(
    running: Running, redis_client: aioredis.Redis
) -> None:
    import aiosmtplib

    from tests.channels.email_kit import fixture_bytes

    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=running.smtp_port, start_tls=False) as client:
        await client.sendmail("", [HOTLINE], fixture_bytes("dsn_bounce_permanent"))  # MAIL FROM:<>
    state = await redis_client.hgetall("sulai:{default}:v1:addr:mailto:nobody@example.net")
    assert state.get(b"unreachable") == b"1" and b"5.1.1" in state.get(b"unreachable_why", b"")
    assert await running.gw.store.count("default") == 0
    await asyncio.sleep(0.5)
    assert running.sink.received == []  # a bounce is never answered


async def test_acknowledgements_rate_limited_per_sender(running: Running) -> None:
    mails = [
        citizen_mail(
            mail_from=CITIZEN, to=HOTLINE, subject=f"第{i}件事", text=f"{FULL_REQUEST} 第{i}次来信。"
        )
        for i in range(6)
    ]
    for msg in mails:
        await running.mail(msg)
    await asyncio.sleep(1.5)
    answered = {str(m["In-Reply-To"]) for m in running.answers()}
    assert str(mails[5]["Message-ID"]) not in answered  # the sixth within the hour gets no answer
    assert str(mails[0]["Message-ID"]) in answered


async def _file_and_close(running: Running) -> tuple[str, EmailMessage]:
    """A citizen files a ticket by one complete mail; staff resolve and close it. Returns the id
    and our acknowledgement (the mail the citizen will answer)."""
    await running.mail(citizen_mail(mail_from=CITIZEN, to=HOTLINE, subject="路灯", text=FULL_REQUEST))
    await _until(lambda: len(running.sink.received) >= 1)
    [ticket_id] = await running.tickets()
    store = running.gw.store
    for status in (TicketStatus.ACCEPTED, TicketStatus.ASSIGNED, TicketStatus.RESOLVED, TicketStatus.CLOSED):
        await store.change_status("default", ticket_id, status, actor="staff:test")
    return ticket_id, running.answers()[0]


def _reply_to(ours: EmailMessage, text: str) -> EmailMessage:
    return citizen_mail(
        mail_from=CITIZEN,
        to=HOTLINE,
        subject=f"Re: {ours['Subject']}",
        text=text,
        in_reply_to=str(ours["Message-ID"]),
        references=[str(ours["Message-ID"])],
    )


async def test_a_reply_to_a_closed_ticket_reopens_it(running: Running) -> None:
    ticket_id, ours = await _file_and_close(running)
    await running.mail(_reply_to(ours, "路灯修好两天又坏了，还是不亮。"))
    ticket = await running.gw.store.get_ticket("default", ticket_id)
    assert ticket is not None and ticket.status == TicketStatus.ACCEPTED
    assert await running.tickets() == [ticket_id]  # no second ticket
    kinds = [
        (e.kind, e.payload.get("to"), e.payload.get("text", ""))
        for e in await running.gw.store.timeline("default", ticket_id)
    ]
    assert ("status", "accepted", "") in [(k, t, "") for k, t, _ in kinds if k == "status"]
    assert any(k == "supplement" and "又坏了" in str(text) for k, _, text in kinds)


async def test_a_reply_to_a_closed_ticket_files_a_linked_one_when_the_tenant_says_so(
    redis_client: aioredis.Redis, data_dir: Path, sink: MailSink
) -> None:
    running = await _start(redis_client, data_dir, sink, closed_reply="new")
    try:
        old_id, ours = await _file_and_close(running)
        await running.mail(_reply_to(ours, "东风路18号门口的路灯又坏了，晚上很黑。电话13812345678。"))
        ids = await running.tickets()
        [new_id] = [i for i in ids if i != old_id]
        old = await running.gw.store.get_ticket("default", old_id)
        new = await running.gw.store.get_ticket("default", new_id)
        assert old is not None and new is not None
        assert old.status == TicketStatus.CLOSED
        assert new.links == (old_id,) and old.links == (new_id,)
    finally:
        await running.gw.close()


async def test_a_subject_token_from_a_stranger_does_not_touch_the_ticket(running: Running) -> None:
    ticket_id, _ = await _file_and_close(running)
    stranger = citizen_mail(
        mail_from="someone.else@example.net",
        to=HOTLINE,
        subject=f"[{ticket_id}] 关于这个工单",
        text="我也想补充一下。",
    )
    await running.mail(stranger)
    ticket = await running.gw.store.get_ticket("default", ticket_id)
    assert ticket is not None and ticket.status == TicketStatus.CLOSED
    events = await running.gw.store.timeline("default", ticket_id)
    assert not any(e.kind == "supplement" for e in events)
