"""The staff API's dependencies, injected by the lead's wiring (no module globals)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from gateway.config import TenantSettings
from store.apply import TenantIds
from store.casestore import CaseStore


@dataclass
class StaffContext:
    """``store`` is the case store (every ticket read and write goes through it; built on
    ``redis`` with the tenant's prefix and time zone when not given) and ``media`` the media
    store (``read(media_id)`` returning bytes; None answers attachments with 404). ``clock``
    returns unix seconds and is injectable so tests can move time (quiet hours, survey expiry);
    staff writes are stamped with it, not with the store's own clock."""

    redis: aioredis.Redis
    tenant: TenantSettings = field(default_factory=TenantSettings)
    store: CaseStore | None = None
    media: Any = None
    clock: Callable[[], float] = time.time
    # Roles that see contact data unmasked even though they are unit/viewer (tenant setting).
    unmasked_roles: tuple[str, ...] = ()
    # Outbound webhooks may target loopback/private addresses only when this is set (tests, LAN).
    webhook_allow_private: bool = False

    def __post_init__(self) -> None:
        if self.store is None:
            ids = TenantIds(prefix=self.tenant.prefix, timezone=self.tenant.timezone)
            self.store = CaseStore(self.redis, clock=self.clock, tenants={self.tenant.id: ids})

    @property
    def cases(self) -> CaseStore:
        assert self.store is not None
        return self.store

    @property
    def tid(self) -> str:
        return self.tenant.id

    @property
    def quiet_window(self) -> tuple[dt.time, dt.time] | None:
        return self.tenant.quiet_window
