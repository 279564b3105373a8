"""A thin aiohttp client for the few WeChat API calls Sulai makes.

wechatpy's client is blocking (requests) and lacks ``stable_token`` (PROTOCOLS.md A.8, A.10), so
we speak the JSON API directly: token/stable_token, message/custom/send, message/template/send,
message/subscribe/bizsend, qrcode/create, menu/create and media/get. The access token lives in
the shared :class:`TokenCache`, so every gateway process uses the same one and only one of them
refreshes it.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from channels.wechat.state import TokenCache

# Codes meaning "this access token is no good": refresh it and retry once (PROTOCOLS.md A.10).
TOKEN_INVALID = frozenset({40001, 40014, 42001})
NETWORK_ERROR = -1  # WeChat's own "system busy" code; we use it for transport failures too


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatApi:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        tenant: str,
        appid: str,
        secret: str,
        tokens: TokenCache,
        use_stable_token: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._tenant = tenant
        self.appid = appid
        self._secret = secret
        self._tokens = tokens
        self._stable = use_stable_token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    # --- tokens -----------------------------------------------------------------------------------

    async def _fetch_token(self, force: bool = False) -> tuple[str, int]:
        if self._stable:
            body = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
            if force:
                body["force_refresh"] = True  # type: ignore[assignment]
            data = await self._request("POST", "/cgi-bin/stable_token", json_body=body)
        else:
            params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
            data = await self._request("GET", "/cgi-bin/token", params=params)
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatApiError(NETWORK_ERROR, f"no access_token in answer: {data!r}")
        return token, int(data.get("expires_in", 7200))

    async def token(self, stale: str | None = None) -> str:
        if stale is None:
            cached = await self._tokens.get(self._tenant, self.appid)
            if cached:
                return cached

        async def fetch() -> tuple[str, int]:
            token, expires = await self._fetch_token()
            if stale is not None and token == stale and self._stable:
                # stable_token hands back the same token while WeChat thinks it valid; we were
                # just told it is not, so ask for a new one (force_refresh: ≤ 20/day, fine here).
                token, expires = await self._fetch_token(force=True)
            return token, expires

        return await self._tokens.refresh(self._tenant, self.appid, fetch, stale)

    # --- calls ------------------------------------------------------------------------------------

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the access token; on an invalid-token code refresh it and retry once."""
        token = await self.token()
        for attempt in (1, 2):
            try:
                return await self._request("POST", path, params={"access_token": token}, json_body=payload)
            except WeChatApiError as exc:
                if exc.errcode not in TOKEN_INVALID or attempt == 2:
                    raise
                token = await self.token(stale=token)
        raise AssertionError("unreachable")

    async def media_get(self, media_id: str) -> tuple[bytes, str]:
        """(bytes, content type) of a temporary media item; errors come back as JSON."""
        token = await self.token()
        for attempt in (1, 2):
            url = f"{self._base}/cgi-bin/media/get"
            try:
                async with self._session.get(
                    url, params={"access_token": token, "media_id": media_id}, timeout=self._timeout
                ) as resp:
                    body = await resp.read()
                    ctype = resp.content_type
                    if resp.status >= 400:
                        raise WeChatApiError(NETWORK_ERROR, f"HTTP {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise WeChatApiError(NETWORK_ERROR, f"{type(exc).__name__}: {exc}") from None
            if ctype in ("application/json", "text/plain"):
                data = _json(body)
                if data.get("video_url"):
                    return json.dumps(data).encode(), "application/json"
                code = int(data.get("errcode", NETWORK_ERROR))
                if code in TOKEN_INVALID and attempt == 1:
                    token = await self.token(stale=token)
                    continue
                raise WeChatApiError(code, str(data.get("errmsg", "")))
            return body, ctype
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # ensure_ascii=False: WeChat shows \\uXXXX escapes literally in some message types.
        data = json.dumps(json_body, ensure_ascii=False).encode() if json_body is not None else None
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        try:
            async with self._session.request(
                method, self._base + path, params=params, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    raise WeChatApiError(NETWORK_ERROR, f"HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WeChatApiError(NETWORK_ERROR, f"{type(exc).__name__}: {exc}") from None
        answer = _json(body)
        code = int(answer.get("errcode", 0) or 0)
        if code != 0:
            raise WeChatApiError(code, str(answer.get("errmsg", "")))
        return answer


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WeChatApiError(NETWORK_ERROR, f"not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise WeChatApiError(NETWORK_ERROR, f"not a JSON object: {body[:80]!r}")
    return data
