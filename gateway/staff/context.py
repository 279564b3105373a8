"""The staff API's dependencies, injected by the lead's wiring (no module globals)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from gateway.config import TenantSettings


@dataclass
class StaffContext:
    """``store`` is the case store object and ``media`` the media store (``open(media_id)`` or
    ``read(media_id)`` returning bytes); either may be None, then the routes needing them use
    the key layout directly or answer 404. ``clock`` returns unix seconds and is injectable so
    tests can move time (quiet hours, survey expiry)."""

    redis: aioredis.Redis
    tenant: TenantSettings = field(default_factory=TenantSettings)
    store: Any = None
    media: Any = None
    clock: Callable[[], float] = time.time
    # Roles that see contact data unmasked even though they are unit/viewer (tenant setting).
    unmasked_roles: tuple[str, ...] = ()
    # Outbound webhooks may target loopback/private addresses only when this is set (tests, LAN).
    webhook_allow_private: bool = False

    @property
    def tid(self) -> str:
        return self.tenant.id

    @property
    def quiet_window(self) -> tuple[dt.time, dt.time] | None:
        return self.tenant.quiet_window
