"""Aliyun 短信服务 (dysmsapi 2017-05-25): the template-only provider (PROTOCOLS.md D).

Inbound (上行) arrives as an unsigned HTTP batch push: a JSON *array* of
``{phone_number, send_time, content, sign_name, dest_code, sequence_id}``. Aliyun documents no
signature, so the push URL carries a secret token (``?token=…``), compared in constant time.
The acknowledgement must be exactly ``{"code":0,"msg":"接收成功"}``; anything else is retried.

Outbound can only be an approved template: ``SendSms`` with ``SignName``, ``TemplateCode`` (from
the catalogue key via ``sms.aliyun.templates``) and ``TemplateParam`` (the Outbound's params as
a JSON object), signed with the RPC signature v1 (HMAC-SHA1 over the sorted, percent-encoded
query). There is no inline reply: the dialogue's answers go through the outbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from channels.base import (
    HttpAnswer,
    Outbound,
    RenderedMessage,
    Route,
    SendError,
    SendErrorCode,
    SendResult,
    WebhookRejected,
    WebhookRequest,
)
from channels.sms.phone import PhoneError, national_cn, to_e164
from channels.sms.providers import IncomingSms, ProviderPush
from channels.sms.settings import AliyunSettings

# The exact body Aliyun expects, or it retries the push (1, 5, 10 minutes later).
ACK = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
ITEM_FIELDS = ("phone_number", "content", "sequence_id")

ERROR_CODES: Mapping[str, SendErrorCode] = {
    "isv.BUSINESS_LIMIT_CONTROL": SendErrorCode.RATE_LIMITED,
    "Throttling.User": SendErrorCode.RATE_LIMITED,
    "isp.SYSTEM_ERROR": SendErrorCode.TEMPORARY,
    "ServiceUnavailable": SendErrorCode.TEMPORARY,
    "isv.MOBILE_NUMBER_ILLEGAL": SendErrorCode.UNREACHABLE,
    "isv.MOBILE_COUNT_OVER_LIMIT": SendErrorCode.REJECTED,
    "isv.TEMPLATE_MISSING_PARAMETERS": SendErrorCode.REJECTED,
    "isv.INVALID_JSON_PARAM": SendErrorCode.REJECTED,
    "isv.BLACK_KEY_CONTROL_LIMIT": SendErrorCode.REJECTED,
    "isv.SMS_TEMPLATE_ILLEGAL": SendErrorCode.MISCONFIGURED,
    "isv.SMS_SIGNATURE_ILLEGAL": SendErrorCode.MISCONFIGURED,
    "isv.AMOUNT_NOT_ENOUGH": SendErrorCode.MISCONFIGURED,
    "InvalidAccessKeyId.NotFound": SendErrorCode.MISCONFIGURED,
    "SignatureDoesNotMatch": SendErrorCode.MISCONFIGURED,
}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's RPC signature wants it (space -> %20, ~ kept)."""
    return quote(value, safe="~")


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunProvider:
    name = "aliyun"
    inline_reply = False

    def __init__(
        self,
        settings: AliyunSettings,
        our_number: str,
        default_region: str = "CN",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.our_number = our_number  # the account Inbounds are addressed to
        self.default_region = default_region
        self._session = session
        self._own: aiohttp.ClientSession | None = None

    def routes(self) -> Sequence[Route]:
        return (Route("POST", self.settings.webhook_path, "aliyun-inbound"),)

    async def parse(self, route: Route, request: WebhookRequest) -> ProviderPush:
        token = request.query.get("token", "")
        if not hmac.compare_digest(token.encode(), self.settings.url_token.encode()):
            raise WebhookRejected(403, "wrong or missing push token")
        try:
            items = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRejected(400, f"body is not JSON: {exc}") from None
        if not isinstance(items, list):
            raise WebhookRejected(400, "body must be a JSON array of up-link messages")
        return ProviderPush(messages=tuple(self._item(i, item) for i, item in enumerate(items)))

    def _item(self, index: int, item: Any) -> IncomingSms:
        if not isinstance(item, dict):
            raise WebhookRejected(400, f"[{index}]: expected an object")
        missing = [name for name in ITEM_FIELDS if item.get(name) in (None, "")]
        if missing:
            raise WebhookRejected(400, f"[{index}]: missing " + ", ".join(missing))
        try:
            sender = to_e164(str(item["phone_number"]), self.default_region)
        except PhoneError as exc:
            raise WebhookRejected(400, f"[{index}].phone_number: {exc}") from exc
        return IncomingSms(
            sender=sender,
            to=self.our_number,
            text=str(item["content"]),
            external_id=f"aliyun:{item['sequence_id']}",
            attrs={"dest_code": str(item.get("dest_code", "")), "send_time": str(item.get("send_time", ""))},
        )

    def render_reply(self, texts: Sequence[str]) -> HttpAnswer:
        # No inline reply on Aliyun: the texts went to the outbox; Aliyun only wants its ack.
        return HttpAnswer(200, ACK, "application/json")

    def request_params(self, to: str, outbound: Outbound) -> dict[str, str]:
        template = self.settings.templates.get(outbound.key)
        if template is None:
            raise SendError(
                SendErrorCode.MISCONFIGURED, f"no Aliyun template for catalogue key {outbound.key!r}"
            )
        params = {
            "AccessKeyId": self.settings.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": outbound.id[:64],
            "PhoneNumbers": national_cn(to),
            "RegionId": self.settings.region,
            "SignName": self.settings.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16),
            "SignatureVersion": "1.0",
            "TemplateCode": template,
            "TemplateParam": json.dumps(dict(outbound.params), ensure_ascii=False, separators=(",", ":")),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        params["Signature"] = rpc_signature(self.settings.access_key_secret, "POST", params)
        return params

    async def send(self, to: str, from_: str, outbound: Outbound, message: RenderedMessage) -> SendResult:
        params = self.request_params(to, outbound)
        try:
            async with self._http().post(self.settings.api_base + "/", data=params) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(SendErrorCode.TEMPORARY, f"Aliyun unreachable: {type(exc).__name__}") from exc
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        code = str(body.get("Code", ""))
        if status == 200 and code == "OK":
            return SendResult(provider_id=str(body.get("BizId", "")), status="sent", path="template")
        kind = ERROR_CODES.get(code) or (SendErrorCode.TEMPORARY if status >= 500 else SendErrorCode.REJECTED)
        raise SendError(kind, f"Aliyun {status}/{code}: {body.get('Message', '')}", code or str(status))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own is None:
            self._own = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))
        return self._own

    def secrets(self) -> Iterable[str]:
        return [s for s in (self.settings.access_key_secret, self.settings.url_token) if s]

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None
