"""Staff pushes by email thread with the citizen's mail: the adapter keeps, per ticket, the
Message-IDs of the citizen's mails and ours (store.mail_state), and a push built without
In-Reply-To/References gets them from there. Status pushes carry their own catalogue subject."""

from __future__ import annotations

import dataclasses
import email
import tomllib
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from channels.base import Outbound, Purpose, RenderedMessage
from channels.email.fake import MailSink, start_sink
from channels.email.outbound import EmailAdapter
from channels.email.settings import sandbox_settings
from conversation.catalogue import Catalogue
from gateway.rendering import Renderer
from gateway.staff.pushes import PUSH_KEYS
from store import keys
from store.mail_state import MailState

TICKET = "SN-261125-0042-1"
OTHER = "SN-261125-0043-9"
CITIZEN = "mailto:zhangwei@example.com"
CATALOGUES = Path(__file__).resolve().parents[2] / "conversation" / "catalogue"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[MailSink]:
    s = await start_sink(tmp_path / "mail-sent")
    yield s
    await s.close()


def _read(sink: MailSink, i: int) -> EmailMessage:
    msg = email.message_from_bytes(sink.received[i].raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def push(key: str, ticket_id: str = TICKET, **attrs: str) -> Outbound:
    return Outbound(
        id=f"{ticket_id}:{key}",
        tenant="default",
        recipient=CITIZEN,
        purpose=Purpose.STATUS,
        key=key,
        params={"ticket_id": ticket_id},
        ticket_id=ticket_id,
        attrs=attrs,
    )


async def test_pushes_reply_to_the_tickets_mail_thread(
    sink: MailSink, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    state = MailState(redis_client)
    adapter = EmailAdapter(sandbox_settings(tmp_path, relay_port=sink.port), threads=state)
    renderer = Renderer(Catalogue.load())
    # Our answer to the citizen's first mail (the intake sets its threading headers).
    ack = push("status.accepted", in_reply_to="c1@example.com", references="c0@example.com")
    first = await adapter.send(ack, RenderedMessage(text="已受理", subject="已受理"))
    accepted = push("status.accepted")  # a staff push: no threading headers of its own
    second = await adapter.send(accepted, renderer.render(accepted, "email"))
    msg = _read(sink, 1)
    assert msg["In-Reply-To"] == f"<{first.provider_id}>"
    assert msg["References"] == f"<c0@example.com> <c1@example.com> <{first.provider_id}>"
    assert msg["Subject"] == f"[{TICKET}] 【速来办】工单 {TICKET} 已受理"
    resolved = dataclasses.replace(
        push("status.resolved"), params={"ticket_id": TICKET, "text": "路灯已修复"}
    )
    third = await adapter.send(resolved, renderer.render(resolved, "email"))
    msg = _read(sink, 2)
    assert msg["In-Reply-To"] == f"<{second.provider_id}>"
    assert msg["References"] == (
        f"<c0@example.com> <c1@example.com> <{first.provider_id}> <{second.provider_id}>"
    )
    assert msg["Subject"] == f"[{TICKET}] 【速来办】工单 {TICKET} 已办结"
    assert await state.ticket_refs(TICKET) == [
        "c0@example.com",
        "c1@example.com",
        first.provider_id,
        second.provider_id,
        third.provider_id,
    ]
    ttl = await redis_client.ttl(keys.email_ticket_refs("default", TICKET))
    assert keys.EMAIL_REFS_TTL - 10 <= ttl <= keys.EMAIL_REFS_TTL
    # Every mail of ours still threads a reply back to the ticket.
    assert await state.ticket_for([third.provider_id]) == TICKET
    # Another ticket's thread is its own.
    await adapter.send(push("status.accepted", OTHER), RenderedMessage(text="x", subject="y"))
    msg = _read(sink, 3)
    assert msg["In-Reply-To"] is None and msg["References"] is None


async def test_ticket_refs_are_capped_and_deduplicated(redis_client: aioredis.Redis) -> None:
    state = MailState(redis_client)
    for i in range(30):
        await state.remember_sent(f"ours{i}@sulai.test", TICKET, [f"c{i}@example.com", "c0@example.com"])
    refs = await state.ticket_refs(TICKET)
    assert len(refs) == keys.EMAIL_REFS_MAX and refs[-1] == "ours29@sulai.test"
    assert len(set(refs)) == len(refs)
    assert await state.ticket_refs(OTHER) == []


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_push_has_its_own_email_subject(language: str) -> None:
    """Not the chat text as a fallback: a subject written for a mailbox."""
    with (CATALOGUES / f"{language}.toml").open("rb") as f:
        table = tomllib.load(f)
    for key in PUSH_KEYS:
        entry = table
        for part in key.split("."):
            entry = entry[part]
        assert entry.get("email_subject", "").strip(), (language, key)
