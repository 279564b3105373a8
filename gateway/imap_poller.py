"""Fetching mail from an existing IMAP mailbox (PROTOCOLS.md C.2), one poller per mailbox.

imapclient is blocking, so every call runs in a worker thread (``asyncio.to_thread``), one at a
time per connection. Per folder we keep (UIDVALIDITY, last processed UID) in Redis; a message is
flagged ``\\Seen`` or moved (config) only after ``deliver`` returned, and the UID state advances
only after that. A crash between deliver and flag therefore fetches the message again, with the
same ``Inbound.external_id``, and the intake's dedupe makes that harmless.

Waiting for news: IDLE when the server has it and one folder is watched (IDLE watches only the
selected folder), re-issued well within RFC 2177's 29 minutes; otherwise a poll every N seconds.
Connection loss: reconnect with exponential backoff, counted in ``sulai_imap_reconnects_total``.
TLS by default; settings refuse plain IMAP to anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import IMAPClientError

from channels.email.parser import MailParser
from channels.email.settings import ImapMailbox
from gateway import metrics
from gateway.smtp_listener import Deliver
from store.mail_state import ImapFolderState

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a lost or refused connection raises (imapclient's abort errors derive from IMAPClientError).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (IMAPClientError, imaplib.IMAP4.error, OSError, EOFError)


class ImapStateStore(Protocol):
    """Where (UIDVALIDITY, last UID) per folder lives; store.mail_state.MailState in production."""

    async def load_imap(self, mailbox: str) -> ImapFolderState | None: ...

    async def save_imap(self, mailbox: str, uidvalidity: int, last_uid: int) -> None: ...


class ImapPoller:
    """Polls one mailbox's folders until :meth:`close`. ``start()`` runs it as a task."""

    def __init__(
        self,
        mailbox: ImapMailbox,
        parser: MailParser,
        deliver: Deliver,
        state: ImapStateStore,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 30.0,
    ) -> None:
        self.mailbox = mailbox
        self.parser = parser
        self.deliver = deliver
        self.state = state
        self.ssl_context = ssl_context
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.account = mailbox.user.lower() if "@" in mailbox.user else mailbox.name
        self.reconnects = 0
        self.delivered = 0
        self._client: IMAPClient | None = None
        self._stop = threading.Event()  # seen by the IDLE loop in its worker thread
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"imap-{self.mailbox.name}")
        return self._task

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_client()

    async def run(self) -> None:
        delay = self.backoff_initial
        while not self._stop.is_set():
            try:
                await self.poll_once()
                delay = self.backoff_initial
                await self._wait_for_news()
            except CONNECTION_ERRORS as exc:
                self.reconnects += 1
                metrics.imap_reconnects.labels(mailbox=self.mailbox.name).inc()
                log.warning(
                    "IMAP %s: connection lost (%s); reconnecting in %.1fs", self.mailbox.name, exc, delay
                )
                await self._drop_client()
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)
            except Exception:
                # deliver failed (store down?): nothing was flagged, so nothing is lost; try again later.
                log.exception("IMAP %s: delivery failed; retrying in %.1fs", self.mailbox.name, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    # --- one round ----------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Connect when needed and deliver everything new in every folder; returns how many."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._connect)
        total = 0
        for folder in self.mailbox.folders:
            total += await self._sync_folder(self._client, folder)
        return total

    def _connect(self) -> IMAPClient:
        mb = self.mailbox
        context = self.ssl_context or (ssl.create_default_context() if mb.tls else None)
        client = IMAPClient(mb.host, port=mb.port, ssl=mb.tls, ssl_context=context, timeout=self.timeout)
        try:
            client.login(mb.user, mb.password)
            if mb.move_to and not client.folder_exists(mb.move_to):
                client.create_folder(mb.move_to)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        log.info("IMAP %s: connected to %s:%d", mb.name, mb.host, mb.port)
        return client

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _state_key(self, folder: str) -> str:
        return f"{self.mailbox.name}/{folder}"

    async def _sync_folder(self, client: IMAPClient, folder: str) -> int:
        info = await self._call(client.select_folder, folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        saved = await self.state.load_imap(self._state_key(folder))
        if saved is None or saved.uidvalidity != uidvalidity:
            # First contact or the server renumbered the folder: take what is not yet processed.
            last_uid, criteria = 0, (["ALL"] if self.mailbox.move_to else ["UNSEEN"])
        else:
            last_uid, criteria = saved.last_uid, ["UID", f"{saved.last_uid + 1}:*"]
        # "n:*" always matches the highest UID, even below n: filter.
        uids = sorted(u for u in await self._call(client.search, criteria) if u > last_uid)
        count = 0
        for start in range(0, len(uids), self.mailbox.batch):
            count += await self._deliver_batch(
                client, folder, uidvalidity, uids[start : start + self.mailbox.batch]
            )
        return count

    async def _deliver_batch(
        self, client: IMAPClient, folder: str, uidvalidity: int, uids: Sequence[int]
    ) -> int:
        fetched = await self._call(client.fetch, list(uids), ["BODY.PEEK[]"])
        done: list[int] = []
        try:
            for uid in uids:
                item = fetched.get(uid)
                raw = item.get(b"BODY[]") if item else None
                if isinstance(raw, bytes):
                    inbound = await self.parser.parse(raw, account=self.account, via="imap")
                    await self.deliver(inbound, raw)
                done.append(uid)  # delivered, or gone from the server meanwhile
        finally:
            # Only what deliver accepted is flagged, and the state moves past it only after that.
            if done:
                await self._after_delivery(client, done)
                await self.state.save_imap(self._state_key(folder), uidvalidity, max(done))
                self.delivered += len(done)
        return len(done)

    async def _after_delivery(self, client: IMAPClient, uids: list[int]) -> None:
        target = self.mailbox.move_to
        if not target:
            await self._call(client.add_flags, uids, [SEEN])
        elif await self._call(client.has_capability, "MOVE"):
            await self._call(client.move, uids, target)
        else:
            await self._call(client.copy, uids, target)
            await self._call(client.add_flags, uids, [DELETED])
            if await self._call(client.has_capability, "UIDPLUS"):
                await self._call(client.expunge, uids)
            else:
                await self._call(client.expunge)

    # --- waiting ------------------------------------------------------------------------------

    async def _wait_for_news(self) -> None:
        client = self._client
        use_idle = (
            client is not None
            and self.mailbox.idle
            and len(self.mailbox.folders) == 1
            and await self._call(client.has_capability, "IDLE")
        )
        if use_idle and client is not None:
            await self._call(self._idle, client, self.mailbox.idle_renew_seconds)
        else:
            await self._sleep(self.mailbox.poll_seconds)

    def _idle(self, client: IMAPClient, renew_after: float) -> None:
        """In a worker thread: IDLE until the server reports a change, ``renew_after`` passes
        (RFC 2177: re-issue within 29 minutes) or we are stopping."""
        client.idle()
        try:
            deadline = time.monotonic() + renew_after
            while not self._stop.is_set() and time.monotonic() < deadline:
                # Sequence numbers (not UIDs) come back; the UID search after this finds the news.
                if client.idle_check(timeout=1.0):
                    return
        finally:
            client.idle_done()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if self._stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def wake(self) -> None:
        """Poll now (tests, and an SMTP notification that new mail arrived)."""
        self._wake.set()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.logout)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.shutdown)
