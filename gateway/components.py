"""The gateway's parts, built from settings and wired together: adapters, store, intake,
dispatcher, scheduler, listeners. `runtime.serve` owns the process; this owns the wiring.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from gateway.config import Settings

log = logging.getLogger(__name__)


def parse_channel_settings(settings: Settings, sandbox: bool) -> dict[str, Any]:
    """Each channel parses its own table; errors name the key."""
    return {}


class Gateway:
    def __init__(self, settings: Settings, redis: aioredis.Redis, sandbox: bool) -> None:
        self.settings = settings
        self.redis = redis
        self.sandbox = sandbox

    @classmethod
    async def create(cls, settings: Settings, redis: aioredis.Redis, sandbox: bool) -> Gateway:
        return cls(settings, redis, sandbox)

    def install_public(self, app: web.Application) -> None:
        pass

    def install_staff(self, app: web.Application) -> None:
        pass

    async def start_roles(self, roles: set[str]) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        pass
