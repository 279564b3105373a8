"""What the SMS adapter needs from shared state, as a small Protocol (CHANNELS.md 2).

The Redis implementation is :class:`store.sms_state.RedisSmsState`; every process of the gateway
shares it, so a number's opt-out, its inbound flood window and its send rate hold across
processes. The adapter never writes tickets or conversations, only these channel facts.
"""

from __future__ import annotations

import enum
from typing import Protocol


class Flood(enum.StrEnum):
    OK = "ok"  # within the per-number inbound limit
    WARN = "warn"  # the first text over the limit in this window: answer "please wait" once
    DROP = "drop"  # further texts over the limit: drop silently


class SmsState(Protocol):
    async def is_opted_out(self, tenant: str, address: str) -> bool: ...

    async def set_opted_out(self, tenant: str, address: str, opted_out: bool) -> None: ...

    async def inbound_hit(self, tenant: str, address: str, limit: int, window_s: int, now: float) -> Flood:
        """Count one inbound text of ``address`` in the current window and judge it."""
        ...

    async def acquire_send(self, tenant: str, number: str, segments: int, rate: float, burst: int) -> float:
        """Take ``segments`` from the number's send budget: 0.0 when allowed (and taken), else
        the seconds to wait before trying again (nothing taken)."""
        ...
