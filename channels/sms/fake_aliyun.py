"""A loopback fake of Aliyun's SMS API (dysmsapi 2017-05-25) for tests and the sandbox.

``POST /`` with ``Action=SendSms`` checks the request the way Aliyun does: the RPC signature v1,
the access key, every required parameter, an approved ``TemplateCode`` and a ``TemplateParam``
that is a JSON object of strings naming exactly the template's variables; it answers Aliyun's JSON
(``{"Code":"OK","BizId":…,"RequestId":…}`` or an error code) and appends what it sent as JSON
lines. :meth:`FakeAliyun.program` queues error codes per number; :meth:`FakeAliyun.push` posts an
up-link JSON array to a gateway like Aliyun's HTTP batch push.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from channels.sms.providers.aliyun import rpc_signature
from channels.sms.simulator import post_aliyun

REQUIRED = (
    "AccessKeyId",
    "Action",
    "Format",
    "PhoneNumbers",
    "SignName",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "TemplateCode",
    "Timestamp",
    "Version",
    "Signature",
)


class FakeAliyun:
    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        templates: Mapping[str, Sequence[str]],  # TemplateCode -> variable names
        record_path: Path | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_name = sign_name
        self.templates = templates
        self.record_path = record_path
        self.sent: list[dict[str, Any]] = []
        self.requests = 0
        self.base_url = ""
        self._errors: dict[str, list[str]] = {}
        self._nonces: set[str] = set()

    def program(self, phone: str, *codes: str) -> None:
        """The next sends to ``phone`` (as sent, e.g. 13812345678) fail with these codes."""
        self._errors.setdefault(phone, []).extend(codes)

    async def push(self, url: str, items: Sequence[Mapping[str, object]]) -> tuple[int, str]:
        return await post_aliyun(url, items)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        return app

    @staticmethod
    def _error(code: str, message: str, status: int = 400) -> web.Response:
        body = {"Code": code, "Message": message, "RequestId": secrets.token_hex(8).upper()}
        return web.json_response(body, status=status)

    def _check(self, p: dict[str, str]) -> web.Response | None:
        missing = [name for name in REQUIRED if not p.get(name)]
        if missing:
            return self._error("MissingParameter", "missing " + ",".join(missing))
        if p["AccessKeyId"] != self.access_key_id:
            return self._error("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        unsigned = {k: v for k, v in p.items() if k != "Signature"}
        if rpc_signature(self.access_key_secret, "POST", unsigned) != p["Signature"]:
            return self._error("SignatureDoesNotMatch", "Specified signature is not matched.")
        if p["SignatureNonce"] in self._nonces:
            return self._error("SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(p["SignatureNonce"])
        if (p["Action"], p["Version"]) != ("SendSms", "2017-05-25"):
            return self._error("InvalidAction", "unknown action/version")
        if p["SignName"] != self.sign_name:
            return self._error("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
        variables = self.templates.get(p["TemplateCode"])
        if variables is None:
            return self._error("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法")
        try:
            values = json.loads(p.get("TemplateParam", "{}"))
        except ValueError:
            return self._error("isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return self._error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if set(values) != set(variables):
            return self._error("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        problem = self._check(params)
        if problem is not None:
            return problem
        phone = params["PhoneNumbers"]
        queued = self._errors.get(phone)
        if queued:
            code = queued.pop(0)
            return self._error(code, "programmed failure", 500 if code.startswith("isp.") else 400)
        record = {
            "biz_id": f"{secrets.randbelow(10**15):015d}^0",
            "phone": phone,
            "template": params["TemplateCode"],
            "params": json.loads(params.get("TemplateParam", "{}")),
            "out_id": params.get("OutId", ""),
            "at": datetime.now(UTC).isoformat(),
        }
        self.sent.append(record)
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            with self.record_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        body = {
            "Code": "OK",
            "Message": "OK",
            "BizId": record["biz_id"],
            "RequestId": secrets.token_hex(8).upper(),
        }
        return web.json_response(body)


async def start_fake(fake: FakeAliyun, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve ``fake`` on loopback: ``(runner, base_url)``; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    fake.base_url = f"http://{host}:{runner.addresses[0][1]}"
    return runner, fake.base_url
