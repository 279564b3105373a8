"""A loopback fake of Twilio's Messages API, for tests and ``sulai serve --sandbox``.

It speaks the real wire protocol (PROTOCOLS.md B.3, B.4): form-encoded
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with Basic auth, Twilio's JSON message
and error shapes, and ``StatusCallback`` posts signed with the auth token exactly as Twilio signs
them (queued → sent → delivered, or a failure on demand). It also serves MMS media behind Basic
auth, and appends what it "sent" as JSON lines to a file.

Errors on demand: Twilio's magic test numbers (``+15005550001`` invalid → 21211,
``+15005550004`` unsubscribed → 21610, ``+15005550009`` not mobile → 21614) and, per recipient,
:meth:`FakeTwilio.program` (a REST error code or HTTP status for the next sends) and
:meth:`FakeTwilio.deliver_as` (the callbacks a message will get). Both are also reachable over
HTTP (``POST /_fake/program`` with ``To`` and ``Codes=21610,500``; ``POST /_fake/deliver_as``
with ``To``, ``Statuses=sent,undelivered`` and ``ErrorCode``; Basic auth as for the API), so a
test or a sandbox user can steer the fake of a running ``sulai serve --sandbox``: its base URL is
written next to the record, in ``twilio-fake.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from channels.sms.segments import count_segments

MAGIC_ERRORS = {"+15005550001": 21211, "+15005550004": 21610, "+15005550009": 21614}
ERROR_TEXT = {
    21211: (400, "The 'To' number is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
}
HTTP_CODES = {429: 20429, 500: 20500, 503: 20500}
FAKE_INFO_NAME = "twilio-fake.json"  # written next to the record: where the fake listens


@dataclass
class SentMessage:
    sid: str
    to: str
    from_: str
    body: str
    status_callback: str
    callbacks: list[dict[str, str]] = field(default_factory=list)  # what we posted back, in order
    callback_statuses: list[int] = field(default_factory=list)  # HTTP status of each callback


class FakeTwilio:
    """State of one fake Twilio account; ``app()`` is its aiohttp application."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        record_path: Path | None = None,
        callback_delay_s: float = 0.005,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.record_path = record_path
        self.callback_delay_s = callback_delay_s
        self.sent: list[SentMessage] = []
        self.requests = 0
        self.media: dict[str, tuple[bytes, str]] = {}
        self.base_url = ""
        self._errors: dict[str, list[int]] = {}
        self._outcomes: dict[str, tuple[list[str], str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # --- programming the fake -----------------------------------------------------------------

    def program(self, to: str, *codes: int) -> None:
        """The next sends to ``to`` fail with these codes in turn: a Twilio error code (21610) or
        an HTTP status (429, 500); then sends succeed again."""
        self._errors.setdefault(to, []).extend(codes)

    def deliver_as(self, to: str, statuses: list[str], error_code: str = "") -> None:
        """The status callbacks (after ``queued``) for messages to ``to``, e.g.
        ``["sent", "undelivered"], "30005"``; default ``["sent", "delivered"]``."""
        self._outcomes[to] = (statuses, error_code)

    def add_media(self, name: str, data: bytes, content_type: str) -> str:
        """Serve ``data`` as MMS media; returns its URL (under this fake, Basic auth required)."""
        self.media[name] = (data, content_type)
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/MM0/Media/{name}"

    async def settle(self) -> None:
        """Wait until every status callback queued so far has been posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- HTTP -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{sid}"
        app.router.add_post(base + "/Messages.json", self._create)
        app.router.add_get(base + "/Messages/{msg}/Media/{name}", self._media)
        app.router.add_post("/_fake/program", self._program_http)
        app.router.add_post("/_fake/deliver_as", self._deliver_as_http)
        app.cleanup_ctx.append(self._client_ctx)
        return app

    async def _client_ctx(self, app: web.Application) -> Any:
        self._session = aiohttp.ClientSession()
        yield
        await self.settle()
        await self._session.close()

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization", "") == f"Basic {expected}" and (
            request.match_info.get("sid", self.account_sid) == self.account_sid
        )

    async def _program_http(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(20003)
        form = await request.post()
        try:
            codes = [int(c) for c in str(form.get("Codes", "")).split(",") if c.strip()]
        except ValueError:
            return web.json_response({"message": "Codes: comma-separated integers"}, status=400)
        self.program(str(form.get("To", "")), *codes)
        return web.json_response({"to": form.get("To", ""), "codes": codes})

    async def _deliver_as_http(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(20003)
        form = await request.post()
        statuses = [s.strip() for s in str(form.get("Statuses", "")).split(",") if s.strip()]
        self.deliver_as(str(form.get("To", "")), statuses, str(form.get("ErrorCode", "")))
        return web.json_response({"to": form.get("To", ""), "statuses": statuses})

    @staticmethod
    def _error(code: int) -> web.Response:
        status, message = ERROR_TEXT.get(code, (400, "Error"))
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return web.json_response(body, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self._authorised(request):
            return self._error(20003)
        form = await request.post()
        to, from_, body = str(form.get("To", "")), str(form.get("From", "")), str(form.get("Body", ""))
        if not to or not from_ or not body:
            return web.json_response(
                {
                    "code": 21604 if not to else 21603 if not from_ else 21602,
                    "message": "A required parameter is missing",
                    "status": 400,
                },
                status=400,
            )
        queued = self._errors.get(to)
        code = queued.pop(0) if queued else MAGIC_ERRORS.get(to)
        if code:
            return self._error(HTTP_CODES.get(code, code))
        message = SentMessage(_sid("SM"), to, from_, body, str(form.get("StatusCallback", "")))
        self.sent.append(message)
        self._record(message)
        if message.status_callback:
            task = asyncio.create_task(self._callbacks(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self._resource(message, "queued"), status=201)

    def _resource(self, m: SentMessage, status: str) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": m.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": m.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(count_segments(m.body)[1]),
            "price": None,
            "price_unit": "USD",
            "sid": m.sid,
            "status": status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": m.to,
            "uri": uri,
        }

    def _record(self, m: SentMessage) -> None:
        if self.record_path is None:
            return
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        line = {
            "sid": m.sid,
            "to": m.to,
            "from": m.from_,
            "body": m.body,
            "at": datetime.now(UTC).isoformat(),
        }
        with self.record_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    async def _callbacks(self, m: SentMessage) -> None:
        statuses, error_code = self._outcomes.get(m.to, (["sent", "delivered"], ""))
        validator = RequestValidator(self.auth_token)
        for status in ["queued", *statuses]:
            await asyncio.sleep(self.callback_delay_s)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": m.from_,
                "MessageSid": m.sid,
                "MessageStatus": status,
                "SmsSid": m.sid,
                "SmsStatus": status,
                "To": m.to,
            }
            if status in ("failed", "undelivered") and error_code:
                params["ErrorCode"] = error_code
            headers = {"X-Twilio-Signature": validator.compute_signature(m.status_callback, params)}
            m.callbacks.append(params)
            assert self._session is not None
            try:
                async with self._session.post(m.status_callback, data=params, headers=headers) as resp:
                    m.callback_statuses.append(resp.status)
            except aiohttp.ClientError:
                m.callback_statuses.append(0)

    async def _media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(20003)
        found = self.media.get(request.match_info["name"])
        if found is None:
            return self._error(20404)
        return web.Response(body=found[0], content_type=found[1])


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


async def start_fake(
    account_sid: str,
    auth_token: str,
    record_path: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> tuple[web.AppRunner, str, FakeTwilio]:
    """Start a fake on loopback: ``(runner, base_url, fake)``; ``await runner.cleanup()`` stops it."""
    fake = FakeTwilio(account_sid, auth_token, record_path)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    fake.base_url = f"http://{host}:{bound}"
    if record_path is not None:
        info = {"base_url": fake.base_url, "account_sid": account_sid}
        record_path.parent.mkdir(parents=True, exist_ok=True)
        (record_path.parent / FAKE_INFO_NAME).write_text(json.dumps(info) + "\n", encoding="utf-8")
    return runner, fake.base_url, fake
