"""Sending to a WeChat address: customer-service message, template message or subscription message.

WeChat allows free-form (customer-service) messages only within 48 h of the citizen's last
message and only 5 of them per window (PROTOCOLS.md A.5); after that a message must be a
configured template (each field ≤ 20 characters, no line breaks, A.6) or a subscription message
the citizen consented to. When none of these is possible the send fails with WINDOW_CLOSED and
the dispatcher tries the citizen's other addresses (SMS).
"""

from __future__ import annotations

import re
import string
from typing import Any

from channels.base import Outbound, RenderedMessage, SendError, SendErrorCode, SendResult
from channels.wechat.api import NETWORK_ERROR, WeChatApi, WeChatApiError
from channels.wechat.settings import TemplateSpec, WeChatSettings
from channels.wechat.state import AddressBook

WINDOW_CODES = frozenset({45015, 45047})  # out of the 48 h window / quota used up
UNREACHABLE_CODES = frozenset({43004})  # the citizen unfollowed
TEMPORARY_CODES = frozenset({45009, NETWORK_ERROR})  # daily API quota / system busy


def map_error(exc: WeChatApiError) -> SendError:
    """WeChat errcode → the closed send-error set (token codes were already retried once)."""
    code = exc.errcode
    if code in WINDOW_CODES:
        kind = SendErrorCode.WINDOW_CLOSED
    elif code in UNREACHABLE_CODES:
        kind = SendErrorCode.UNREACHABLE
    elif code in TEMPORARY_CODES:
        kind = SendErrorCode.TEMPORARY
    else:
        kind = SendErrorCode.REJECTED
    return SendError(kind, exc.errmsg or str(exc), provider_code=str(code))


_SPACES = re.compile(r"\s+")


def fit_field(value: str, limit: int) -> str:
    """One template field: no line breaks, at most ``limit`` characters (ellipsis when cut)."""
    flat = _SPACES.sub(" ", value).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_fields(
    spec: TemplateSpec, outbound: Outbound, message: RenderedMessage, limit: int
) -> dict[str, dict[str, str]]:
    """The ``data`` block of a template/subscription message from the spec's format strings."""
    values: dict[str, str] = {**outbound.params, "text": message.text}
    if outbound.ticket_id:
        values.setdefault("ticket_id", outbound.ticket_id)
    data = {}
    for name, fmt in spec.fields.items():
        wanted = {f for _, f, _, _ in string.Formatter().parse(fmt) if f}
        missing = sorted(wanted - values.keys())
        if missing:
            raise SendError(
                SendErrorCode.MISCONFIGURED,
                f"template field {name} of {outbound.key!r} needs params {', '.join(missing)}",
            )
        data[name] = {"value": fit_field(fmt.format_map(values), limit)}
    return data


class Sender:
    """Chooses the path for one Outbound and sends it; records nothing but the address facts."""

    def __init__(self, settings: WeChatSettings, addresses: AddressBook, clock: Any) -> None:
        self._settings = settings
        self._addresses = addresses
        self._clock = clock

    async def send(
        self, api: WeChatApi, tenant: str, outbound: Outbound, message: RenderedMessage
    ) -> SendResult:
        openid = outbound.recipient.split(":", 2)[2]
        address = outbound.recipient
        reason = await self._addresses.unreachable(tenant, address)
        if reason:
            raise SendError(SendErrorCode.UNREACHABLE, f"address marked unreachable: {reason}")
        s = self._settings
        if await self._addresses.claim_custom(
            tenant,
            address,
            self._clock(),
            (s.custom_window_s, s.custom_quota),
            (s.event_window_s, s.event_quota),
        ):
            try:
                return await self._custom(api, openid, outbound, message)
            except SendError as exc:
                if exc.code is not SendErrorCode.WINDOW_CLOSED:
                    await self._note_failure(tenant, address, exc)
                    raise
                # Our view of the window disagreed with WeChat's; believe WeChat, use a template.
                await self._addresses.close_window(tenant, address)
        return await self._outside_window(api, tenant, openid, outbound, message)

    async def _custom(
        self, api: WeChatApi, openid: str, outbound: Outbound, message: RenderedMessage
    ) -> SendResult:
        media_id = outbound.attrs.get("wechat_media_id", "")
        payload: dict[str, Any] = (
            {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
            if media_id
            else {"touser": openid, "msgtype": "text", "text": {"content": message.text}}
        )
        try:
            answer = await api.call("/cgi-bin/message/custom/send", payload)
        except WeChatApiError as exc:
            raise map_error(exc) from None
        # Customer-service sends return no message id; our outbound id identifies it.
        return SendResult(provider_id=str(answer.get("msgid", outbound.id)), status="sent", path="custom")

    async def _outside_window(
        self, api: WeChatApi, tenant: str, openid: str, outbound: Outbound, message: RenderedMessage
    ) -> SendResult:
        s = self._settings
        template = s.templates.get(outbound.key)
        if template:
            payload: dict[str, Any] = {
                "touser": openid,
                "template_id": template.template_id,
                "data": render_fields(template, outbound, message, s.template_field_max),
            }
            if template.url:
                payload["url"] = template.url
            return await self._api_send(
                api, tenant, outbound, "/cgi-bin/message/template/send", payload, "template"
            )
        sub = s.subscriptions.get(outbound.key)
        if sub and await self._addresses.take_consent(tenant, outbound.recipient, sub.template_id):
            payload = {
                "touser": openid,
                "template_id": sub.template_id,
                "data": render_fields(sub, outbound, message, s.template_field_max),
            }
            if sub.url:
                payload["page"] = sub.url
            return await self._api_send(
                api, tenant, outbound, "/cgi-bin/message/subscribe/bizsend", payload, "subscribe"
            )
        why = "no template for this message" if not sub else "no subscription consent"
        raise SendError(
            SendErrorCode.WINDOW_CLOSED, f"48-h window closed or quota used; {why} ({outbound.key})"
        )

    async def _api_send(
        self, api: WeChatApi, tenant: str, outbound: Outbound, path: str, payload: dict[str, Any], kind: str
    ) -> SendResult:
        try:
            answer = await api.call(path, payload)
        except WeChatApiError as exc:
            error = map_error(exc)
            await self._note_failure(tenant, outbound.recipient, error)
            raise error from None
        return SendResult(provider_id=str(answer.get("msgid", outbound.id)), status="sent", path=kind)

    async def _note_failure(self, tenant: str, address: str, error: SendError) -> None:
        if error.code is SendErrorCode.UNREACHABLE:
            await self._addresses.set_unreachable(tenant, address, f"wechat {error.provider_code}")
