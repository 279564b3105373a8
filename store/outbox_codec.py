"""Outbound <-> JSON, and the envelope an outbox entry travels in. Pure: no redis.

An outbox stream entry has one field ``o``: the envelope JSON
``{"ob": <outbound>, "n": <attempts made>, "tried": [addresses tried], "why": <last reason>}``.
The same envelope is the member of the delayed ZSET and of a dead-letter entry, so an entry can
move between them without losing its history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from channels.base import Outbound, Purpose


def outbound_to_json(ob: Outbound) -> dict[str, Any]:
    return {
        "id": ob.id,
        "tenant": ob.tenant,
        "recipient": ob.recipient,
        "purpose": ob.purpose.value,
        "key": ob.key,
        "params": dict(ob.params),
        "ticket_id": ob.ticket_id,
        "not_before": ob.not_before,
        "language": ob.language,
        "attrs": dict(ob.attrs),
    }


def outbound_from_json(data: Mapping[str, Any]) -> Outbound:
    return Outbound(
        id=str(data["id"]),
        tenant=str(data["tenant"]),
        recipient=str(data["recipient"]),
        purpose=Purpose(data["purpose"]),
        key=str(data["key"]),
        params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
        ticket_id=data.get("ticket_id"),
        not_before=float(data.get("not_before") or 0.0),
        language=str(data.get("language") or "zh-CN"),
        attrs={str(k): str(v) for k, v in (data.get("attrs") or {}).items()},
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """An outbound plus its delivery history so far."""

    outbound: Outbound
    attempts: int = 0
    tried: tuple[str, ...] = ()  # addresses already tried (fallback never loops)
    why: str = ""  # last failure, for the dead-letter view
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "ob": outbound_to_json(self.outbound),
                "n": self.attempts,
                "tried": list(self.tried),
                "why": self.why,
            },
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        data = json.loads(text)
        return cls(
            outbound=outbound_from_json(data["ob"]),
            attempts=int(data.get("n") or 0),
            tried=tuple(data.get("tried") or ()),
            why=str(data.get("why") or ""),
        )

    def retried(self, why: str) -> Envelope:
        return replace(self, attempts=self.attempts + 1, why=why)
