"""The IMAP poller against a real Dovecot on loopback (tests/dovecot.py), UID state on real Valkey.

Mails are put in the mailbox with IMAP APPEND, the way another client would. If Dovecot is not
installed these tests fail with the command that installs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from imapclient import IMAPClient

from channels.base import Inbound
from channels.email.parser import MailParser
from channels.email.settings import ImapMailbox
from channels.email.simulator import citizen_mail
from gateway import metrics
from gateway.imap_poller import CONNECTION_ERRORS, ImapPoller
from store.mail_state import MailState
from tests.channels.email_kit import HOTLINE, Recorder, email_settings, fixture_bytes
from tests.dovecot import PASSWORD, USER, Dovecot

NAMES = ["plain_new_request", "gb2312_with_gbk_chars", "reply_qq_mail_html"]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def _mailbox(server: Dovecot, **kw: Any) -> ImapMailbox:
    base: dict[str, Any] = {
        "name": "test", "host": "127.0.0.1", "port": server.port, "tls": False, "user": USER,
        "password": PASSWORD, "poll_seconds": 60.0,
    }  # fmt: skip
    return ImapMailbox(**{**base, **kw})


def _imap(server: Dovecot) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    client.login(USER, PASSWORD)
    return client


async def append(server: Dovecot, raws: list[bytes], folder: str = "INBOX") -> None:
    def run() -> None:
        with _imap(server) as c:
            for raw in raws:
                c.append(folder, raw)

    await asyncio.to_thread(run)


async def flags(server: Dovecot, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    def run() -> dict[int, tuple[bytes, ...]]:
        with _imap(server) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            return {uid: tuple(d[b"FLAGS"]) for uid, d in c.fetch(uids, ["FLAGS"]).items()} if uids else {}

    return await asyncio.to_thread(run)


@pytest.fixture
async def make_poller(redis_client: aioredis.Redis) -> AsyncIterator[Any]:
    made: list[ImapPoller] = []

    def make(mailbox: ImapMailbox, deliver: Any) -> ImapPoller:
        settings = email_settings()
        poller = ImapPoller(
            mailbox, MailParser(settings), deliver, MailState(redis_client), backoff_initial=0.2
        )
        made.append(poller)
        return poller

    yield make
    for p in made:
        await p.close()


async def test_ingest_flags_seen_and_saves_uid_state(
    dovecot: Dovecot, make_poller: Any, redis_client: aioredis.Redis
) -> None:
    await append(dovecot, [fixture_bytes(n) for n in NAMES])
    rec = Recorder()
    poller = make_poller(_mailbox(dovecot), rec)
    assert await poller.poll_once() == 3
    assert [i.attrs["message_id"] for i, _ in rec.got] == ["a1@example.com", "a3@example.cn", "r2@qq.com"]
    first: Inbound = rec.got[0][0]
    assert first.attrs["via"] == "imap" and first.account == USER and first.text.startswith("你好：")
    assert rec.got[1][0].text == "我叫朱镕基，住在堃园小区，楼道灯坏了。"
    assert all(b"\\Seen" in f for f in (await flags(dovecot)).values())
    saved = await MailState(redis_client).load_imap("test/INBOX")
    assert saved is not None and saved.last_uid == 3

    # A restarted poller (same Redis state) fetches nothing old, only what is new.
    rec2 = Recorder()
    again = make_poller(_mailbox(dovecot), rec2)
    assert await again.poll_once() == 0
    await append(dovecot, [fixture_bytes("big5_traditional")])
    assert await again.poll_once() == 1 and rec2.external_ids == ["a7@example.hk"]


async def test_flag_only_after_deliver(
    dovecot: Dovecot, make_poller: Any, redis_client: aioredis.Redis
) -> None:
    await append(dovecot, [fixture_bytes(n) for n in NAMES])

    class FailSecond(Recorder):
        store_down = True

        async def __call__(self, inbound: Inbound, raw: bytes) -> None:
            if len(self.got) == 1 and self.store_down:
                raise ConnectionError("store down")
            self.got.append((inbound, raw))

    rec = FailSecond()
    poller = make_poller(_mailbox(dovecot), rec)
    with pytest.raises(ConnectionError):
        await poller.poll_once()
    state = await flags(dovecot)
    assert [b"\\Seen" in state[uid] for uid in sorted(state)] == [True, False, False]
    saved = await MailState(redis_client).load_imap("test/INBOX")
    assert saved is not None and saved.last_uid == 1

    rec.store_down = False  # the store is back: the rest comes, nothing twice
    assert await poller.poll_once() == 2
    assert rec.external_ids == ["a1@example.com", "a3@example.cn", "r2@qq.com"]
    assert all(b"\\Seen" in f for f in (await flags(dovecot)).values())


async def test_crash_between_deliver_and_flag_refetches_same_external_id(
    dovecot: Dovecot, make_poller: Any, redis_client: aioredis.Redis
) -> None:
    await append(dovecot, [fixture_bytes("no_message_id")])
    rec = Recorder()
    poller = make_poller(_mailbox(dovecot), rec)

    async def deliver_then_die(inbound: Inbound, raw: bytes) -> None:
        await rec(inbound, raw)  # stored …
        assert poller._client is not None
        poller._client.shutdown()  # … and the connection dies before the flag is set

    poller.deliver = deliver_then_die
    with pytest.raises(CONNECTION_ERRORS):
        await poller.poll_once()
    assert await MailState(redis_client).load_imap("test/INBOX") is None
    assert all(b"\\Seen" not in f for f in (await flags(dovecot)).values())

    restarted = make_poller(_mailbox(dovecot), rec)
    assert await restarted.poll_once() == 1
    # The same mail again, with the same external id: the intake's dedupe drops it.
    assert len(rec.external_ids) == 2 and rec.external_ids[0] == rec.external_ids[1]
    assert rec.external_ids[0].startswith("sha256:")


async def test_move_to_folder_after_delivery(dovecot: Dovecot, make_poller: Any) -> None:
    await append(dovecot, [fixture_bytes(n) for n in NAMES[:2]])
    rec = Recorder()
    poller = make_poller(_mailbox(dovecot, after="move:Processed"), rec)
    assert await poller.poll_once() == 2
    assert await flags(dovecot) == {}
    assert len(await flags(dovecot, "Processed")) == 2


async def test_uidvalidity_change_resyncs(
    dovecot: Dovecot, make_poller: Any, redis_client: aioredis.Redis
) -> None:
    await append(dovecot, [fixture_bytes("plain_new_request")])
    await MailState(redis_client).save_imap("test/INBOX", 1, 99)  # state of another folder generation
    rec = Recorder()
    assert await make_poller(_mailbox(dovecot), rec).poll_once() == 1


async def test_idle_picks_up_new_mail_and_reconnects_after_server_restart(
    dovecot: Dovecot, make_poller: Any
) -> None:
    rec = Recorder()
    poller = make_poller(_mailbox(dovecot, poll_seconds=600.0), rec)  # only IDLE can be this quick
    before = metrics.imap_reconnects.labels(mailbox="test")._value.get()
    poller.start()
    await asyncio.sleep(0.5)
    await append(
        dovecot, [citizen_mail(mail_from="a@example.com", to=HOTLINE, subject="路灯", text="一").as_bytes()]
    )
    await _until(lambda: len(rec.got) == 1, 10)

    await asyncio.to_thread(dovecot.stop)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(dovecot.start)
    await append(
        dovecot, [citizen_mail(mail_from="b@example.com", to=HOTLINE, subject="井盖", text="二").as_bytes()]
    )
    await _until(lambda: len(rec.got) == 2, 20)
    assert [i.text for i, _ in rec.got] == ["一", "二"]
    assert poller.reconnects >= 1
    assert metrics.imap_reconnects.labels(mailbox="test")._value.get() >= before + 1


async def _until(cond: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(0.05)
