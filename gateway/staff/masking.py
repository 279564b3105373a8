"""Masking of citizen contact data in the views of roles that do not need it.

``unit`` and ``viewer`` members see phone numbers as ``138****5678`` and citizen addresses
(``tel:``, ``mailto:``, ``wechat:``) masked, unless the tenant's setting lists the role as
allowed to see them. The location of the problem is not masked: a unit must be able to go there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.staff.auth import Role

DEFAULT_MASKED_ROLES = frozenset({Role.UNIT, Role.VIEWER})


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; ``+8613812345678`` → ``+86138****5678``."""
    digits_at = [i for i, ch in enumerate(phone) if ch.isdigit()]
    if len(digits_at) < 7:
        return "*" * len(phone)
    # Keep the country code visible when present: it is not personal.
    start = 2 if phone.startswith("+86") else 0
    keep_head = digits_at[start + 3] if len(digits_at) - start >= 11 else digits_at[3]
    keep_tail = digits_at[-4]
    return phone[:keep_head] + "****" + phone[keep_tail:]


def mask_email(email: str) -> str:
    local, sep, domain = email.rpartition("@")
    if not sep:
        return "***"
    return (local[:1] + "***@" + domain) if local else "***@" + domain


def mask_address(address: str) -> str:
    """A Sulai address (``scheme:path``) with its personal part masked."""
    scheme, sep, rest = address.partition(":")
    if not sep:
        return "***"
    if scheme == "tel":
        return "tel:" + mask_phone(rest)
    if scheme == "mailto":
        return "mailto:" + mask_email(rest)
    if scheme == "wechat":
        appid, _, openid = rest.partition(":")
        return f"wechat:{appid}:{openid[:4]}****" if openid else "wechat:****"
    return scheme + ":****"


def must_mask(role: Role, unmasked_roles: Iterable[str] = ()) -> bool:
    return role in DEFAULT_MASKED_ROLES and role.value not in set(unmasked_roles)


def mask_ticket_view(view: dict[str, Any]) -> dict[str, Any]:
    """Mask the contact fields of a ticket view (a new dict; the input is not changed)."""
    out = dict(view)
    if out.get("phone"):
        out["phone"] = mask_phone(str(out["phone"]))
    if out.get("citizen"):
        out["citizen"] = mask_address(str(out["citizen"]))
    if isinstance(out.get("addresses"), list):
        out["addresses"] = [mask_address(str(a)) for a in out["addresses"]]
    return out
