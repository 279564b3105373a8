"""The shared state the WeChat adapter needs, as small Protocols.

The adapter never writes tickets or conversations; it only needs a few channel facts shared by
all gateway processes. ``store.wechat_state`` implements these on Redis (one class, all three).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from channels.base import Location

# Fetches a fresh token from WeChat: () -> (token, expires_in seconds).
TokenFetch = Callable[[], Awaitable[tuple[str, int]]]


class ReplayGuard(Protocol):
    async def first_use(self, tenant: str, account: str, nonce: str, fingerprint: str, ttl: int) -> bool:
        """Claim a webhook nonce. True when unseen, or seen with the same body ``fingerprint``
        (WeChat re-delivering the very same push; the intake's dedupe absorbs it). False when the
        nonce came with another body: a captured signature replayed with new content."""
        ...

    async def first_use_noting(
        self, tenant: str, account: str, nonce: str, fingerprint: str, ttl: int, note: tuple[str, str, float]
    ) -> bool:
        """:meth:`first_use`, and only when it passes, ``note`` = (kind, address, at) applied as
        :meth:`AddressBook.note_message` (kind "message") or ``note_event`` ("event"), in one
        round trip: nearly every push is a message, so this is the webhook's hot path."""
        ...


class TokenCache(Protocol):
    async def get(self, tenant: str, appid: str) -> str | None:
        """The shared access token, if one is cached."""
        ...

    async def refresh(self, tenant: str, appid: str, fetch: TokenFetch, stale: str | None) -> str:
        """A usable token: the cached one unless missing or equal to ``stale`` (rejected by
        WeChat); otherwise exactly one process across the cluster calls ``fetch`` while the
        others wait for its result."""
        ...


class AddressBook(Protocol):
    """Per-address WeChat facts: the customer-service window and quota, unreachable marks,
    the last reported location and subscription-message consent."""

    async def note_message(self, tenant: str, address: str, at: float) -> None:
        """A citizen message at ``at`` (unix s) opens a fresh 48-h window with a fresh quota.
        A re-delivery of an older message must not reset the quota."""
        ...

    async def note_event(self, tenant: str, address: str, at: float) -> None:
        """A follow, scan or menu click opens the short event window (3 messages / 1 minute)."""
        ...

    async def claim_custom(
        self, tenant: str, address: str, now: float, window: tuple[int, int], event_window: tuple[int, int]
    ) -> bool:
        """Atomically take one customer-service message from the open window.
        ``window``/``event_window`` are (seconds, quota). False when no window has quota left."""
        ...

    async def close_window(self, tenant: str, address: str) -> None:
        """WeChat said the window is closed or used up (45015/45047): stop trying it."""
        ...

    async def set_unreachable(self, tenant: str, address: str, reason: str) -> None: ...

    async def clear_unreachable(self, tenant: str, address: str) -> None: ...

    async def unreachable(self, tenant: str, address: str) -> str:
        """The reason the address is unreachable, or "" when it is reachable."""
        ...

    async def set_location(self, tenant: str, address: str, location: Location) -> None: ...

    async def last_location(self, tenant: str, address: str) -> Location | None: ...

    async def add_consent(self, tenant: str, address: str, template_id: str, long_term: bool) -> None:
        """The citizen accepted a subscription message (one more one-time use, or long-term)."""
        ...

    async def revoke_consent(self, tenant: str, address: str, template_id: str) -> None: ...

    async def take_consent(self, tenant: str, address: str, template_id: str) -> bool:
        """Use one consent for a send: long-term stays, one-time is consumed. False when none."""
        ...
