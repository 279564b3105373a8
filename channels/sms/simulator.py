"""Posts inbound SMS to a gateway the way the providers do: Twilio's signed form webhooks and
Aliyun's JSON-array pushes. Used by ``sulai simulate sms``, the end-to-end tests and the bench.

Twilio signs the URL *it* called (the public base, e.g. ``https://sms.example.gov.cn``), which
behind a TLS proxy is not the URL the gateway process sees; so the simulator posts to
``gateway_url`` but signs ``public_base`` + path, like Twilio behind a proxy.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import aiohttp
from twilio.request_validator import RequestValidator

CHINA = timezone(timedelta(hours=8))


def sign(auth_token: str, url: str, params: Mapping[str, str], algorithm: str | None = None) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a form post of ``params`` to ``url``."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params), algorithm))


def twilio_form(
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    message_sid: str | None = None,
    media: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The parameters of Twilio's inbound SMS/MMS webhook (PROTOCOLS.md B.1)."""
    sid = message_sid or ("MM" if media else "SM") + secrets.token_hex(16)
    form = {
        "ToCountry": "US",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "CN",
        "To": to,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": "2010-04-01",
    }
    for n, (url, content_type) in enumerate(media):
        form[f"MediaUrl{n}"] = url
        form[f"MediaContentType{n}"] = content_type
    return form


class TwilioSimulator:
    """Sends signed inbound webhooks to ``gateway_url`` + ``path``."""

    def __init__(
        self,
        gateway_url: str,
        account_sid: str,
        auth_token: str,
        our_number: str,
        public_base: str | None = None,
        path: str = "/sms/twilio",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.public_base = (public_base or gateway_url).rstrip("/")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.our_number = our_number
        self.path = path
        self._session = session

    async def post(self, params: Mapping[str, str], path: str | None = None) -> tuple[int, str]:
        """Post ``params`` signed; returns (HTTP status, body text)."""
        path = path or self.path
        headers = {"X-Twilio-Signature": sign(self.auth_token, self.public_base + path, params)}
        session = self._session or aiohttp.ClientSession()
        try:
            async with session.post(self.gateway_url + path, data=dict(params), headers=headers) as resp:
                return resp.status, await resp.text()
        finally:
            if self._session is None:
                await session.close()

    async def text(self, from_: str, body: str, message_sid: str | None = None) -> tuple[int, str]:
        return await self.post(twilio_form(self.account_sid, from_, self.our_number, body, message_sid))


def aliyun_push(
    phone: str, content: str, dest_code: str = "", sequence_id: int | None = None
) -> dict[str, object]:
    """One element of Aliyun's SmsUp HTTP batch push (PROTOCOLS.md D)."""
    return {
        "phone_number": phone,
        "send_time": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
        "content": content,
        "sign_name": "速来办",
        "dest_code": dest_code,
        "sequence_id": sequence_id if sequence_id is not None else secrets.randbelow(10**12),
    }


async def post_aliyun(
    url: str, items: Sequence[Mapping[str, object]], session: aiohttp.ClientSession | None = None
) -> tuple[int, str]:
    """Push a JSON array of up-link messages to ``url`` (which carries the secret token)."""
    own = session or aiohttp.ClientSession()
    try:
        body = json.dumps(list(items), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json;charset=utf-8"}
        async with own.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()
    finally:
        if session is None:
            await own.close()
