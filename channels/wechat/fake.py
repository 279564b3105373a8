"""A loopback fake of the WeChat API, speaking its wire protocol (JSON, errcode/errmsg).

Endpoints: ``GET /cgi-bin/token``, ``POST /cgi-bin/stable_token``, ``POST /cgi-bin/message/custom/send``,
``/message/template/send``, ``/message/subscribe/bizsend``, ``/qrcode/create``, ``/menu/create``,
``GET /cgi-bin/media/get``. Tokens behave like WeChat's: ``/token`` mints a new one each call
(the previous stays valid for 5 min), ``stable_token`` returns the current one unless forced.
Errors on demand (:meth:`FakeWeChat.fail_next`), token expiry on demand, counts of token
fetches, and a record of everything sent (in memory and as JSON lines in ``sent_log``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40007: "invalid media_id",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    -1: "system error",
}
TOKEN_GRACE_S = 300  # a replaced token keeps working for 5 min, as on WeChat


class FakeWeChat:
    def __init__(
        self,
        accounts: dict[str, str],
        sent_log: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = dict(accounts)  # appid -> secret
        self.sent_log = sent_log
        self.clock = clock
        self.token_fetches: Counter[str] = Counter()  # appid -> number of tokens minted or handed out
        self.sent: list[dict[str, Any]] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.qrcodes: list[dict[str, Any]] = []
        self.menus: dict[str, Any] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, valid until)
        self._current: dict[str, str] = {}  # appid -> current token
        self._failures: dict[str, list[int]] = {}
        self._stale: set[str] = set()
        # Seconds the token endpoints take to answer: a slow fetch widens the window in which
        # several processes want a token at once (the shared-refresh tests need that window).
        self.token_delay_s = 0.0

    # --- control ----------------------------------------------------------------------------------

    def fail_next(self, endpoint: str, errcode: int, times: int = 1) -> None:
        """The next ``times`` calls of ``endpoint`` (e.g. ``message/custom/send``) answer ``errcode``."""
        self._failures.setdefault(endpoint, []).extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every token issued so far answers 42001 from now on."""
        self._stale.update(self._tokens)
        self._current.clear()

    def add_media(self, media_id: str, body: bytes, content_type: str) -> None:
        self.media[media_id] = (body, content_type)

    # --- handlers ---------------------------------------------------------------------------------

    def _mint(self, appid: str) -> str:
        token = "FAKE_" + secrets.token_urlsafe(48)  # WeChat tokens are long; reserve 512 chars
        old = self._current.get(appid)
        if old:
            self._tokens[old] = (appid, min(self._tokens[old][1], self.clock() + TOKEN_GRACE_S))
        self._tokens[token] = (appid, self.clock() + 7200)
        self._current[appid] = token
        return token

    def _credentials(self, appid: str, secret: str) -> web.Response | None:
        if appid not in self.accounts:
            return _error(40013)
        if self.accounts[appid] != secret:
            return _error(40125)
        return None

    async def token(self, request: web.Request) -> web.Response:
        q = request.query
        bad = self._credentials(q.get("appid", ""), q.get("secret", ""))
        if bad:
            return bad
        self.token_fetches[q["appid"]] += 1
        await asyncio.sleep(self.token_delay_s)
        return web.json_response({"access_token": self._mint(q["appid"]), "expires_in": 7200})

    async def stable_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        appid = str(body.get("appid", ""))
        bad = self._credentials(appid, str(body.get("secret", "")))
        if bad:
            return bad
        self.token_fetches[appid] += 1
        await asyncio.sleep(self.token_delay_s)
        token = self._current.get(appid)
        if not token or body.get("force_refresh") or self._tokens[token][1] <= self.clock():
            token = self._mint(appid)
        return web.json_response(
            {"access_token": token, "expires_in": int(self._tokens[token][1] - self.clock())}
        )

    def _check(self, request: web.Request, endpoint: str) -> tuple[str, web.Response | None]:
        token = request.query.get("access_token", "")
        if token in self._stale:
            return "", _error(42001)
        if token not in self._tokens or self._tokens[token][1] <= self.clock():
            return "", _error(40001)
        queued = self._failures.get(endpoint)
        if queued:
            return "", _error(queued.pop(0))
        return self._tokens[token][0], None

    def _record(self, endpoint: str, appid: str, body: dict[str, Any]) -> int:
        msgid = len(self.sent) + 1000
        entry = {"endpoint": endpoint, "appid": appid, "msgid": msgid, "at": self.clock(), "body": body}
        self.sent.append(entry)
        if self.sent_log:
            self.sent_log.parent.mkdir(parents=True, exist_ok=True)
            with self.sent_log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return msgid

    def _sender(self, endpoint: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            appid, bad = self._check(request, endpoint)
            if bad:
                return bad
            body = await request.json()
            msgid = self._record(endpoint, appid, body)
            answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
            if endpoint != "message/custom/send":
                answer["msgid"] = msgid
            return web.json_response(answer)

        return handle

    async def qrcode_create(self, request: web.Request) -> web.Response:
        appid, bad = self._check(request, "qrcode/create")
        if bad:
            return bad
        body = await request.json()
        ticket = "gQ" + secrets.token_urlsafe(24)
        self.qrcodes.append({"appid": appid, "ticket": ticket, **body})
        answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{ticket[:22]}"}
        if "expire_seconds" in body:
            answer["expire_seconds"] = body["expire_seconds"]
        return web.json_response(answer)

    async def menu_create(self, request: web.Request) -> web.Response:
        appid, bad = self._check(request, "menu/create")
        if bad:
            return bad
        self.menus[appid] = await request.json()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def media_get(self, request: web.Request) -> web.Response:
        _appid, bad = self._check(request, "media/get")
        if bad:
            return bad
        item = self.media.get(request.query.get("media_id", ""))
        if item is None:
            return _error(40007)
        return web.Response(body=item[0], content_type=item[1])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self.token)
        app.router.add_post("/cgi-bin/stable_token", self.stable_token)
        for endpoint in ("message/custom/send", "message/template/send", "message/subscribe/bizsend"):
            app.router.add_post(f"/cgi-bin/{endpoint}", self._sender(endpoint))
        app.router.add_post("/cgi-bin/qrcode/create", self.qrcode_create)
        app.router.add_post("/cgi-bin/menu/create", self.menu_create)
        app.router.add_get("/cgi-bin/media/get", self.media_get)
        return app


def _error(code: int) -> web.Response:
    # WeChat answers errors with HTTP 200 and a JSON body.
    return web.json_response({"errcode": code, "errmsg": ERRMSG.get(code, "error")})


async def start_fake(fake: FakeWeChat, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve ``fake`` on loopback; returns (runner to clean up, base URL)."""
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://{host}:{bound}"


SANDBOX_SENT = Path("sandbox") / "wechat-sent.jsonl"
SANDBOX_URL_FILE = Path("sandbox") / "wechat-api.url"


async def start_sandbox_fake(
    data_dir: Path, accounts: dict[str, str], host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str, FakeWeChat]:
    """The fake as ``serve --sandbox`` runs it: recording to ``<data-dir>/sandbox/wechat-sent.jsonl``
    and writing its base URL to ``<data-dir>/sandbox/wechat-api.url`` so CLI commands
    (``sulai wechat qrcode``/``menu``) find it."""
    fake = FakeWeChat(accounts, sent_log=data_dir / SANDBOX_SENT)
    runner, base_url = await start_fake(fake, host, port)
    url_file = data_dir / SANDBOX_URL_FILE
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.write_text(base_url + "\n", encoding="utf-8")
    return runner, base_url, fake
