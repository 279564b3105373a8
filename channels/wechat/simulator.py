"""Pushes messages to a gateway the way WeChat does: signed, optionally encrypted, retried.

WeChat waits 5 s for an answer, then re-delivers the same push, up to 3 more times
(PROTOCOLS.md A.4); the simulator does the same. Replies are read back like WeChat reads them:
``success``/empty means "nothing to show", otherwise a text reply, decrypted when encrypted.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from wechatpy.crypto import WeChatCrypto

from channels.wechat.crypto import signature, signature_ok
from channels.wechat.xmlsafe import cdata, parse_xml


@dataclass(frozen=True, slots=True)
class SimReply:
    status: int
    body: bytes
    text: str | None  # the passive reply's Content; None for success/empty/error
    attempts: int
    xml: dict[str, object] | None = None


class WeChatSimulator:
    def __init__(
        self,
        url: str,
        *,
        token: str,
        appid: str,
        account_id: str,
        encoding_aes_key: str = "",
        mode: str = "plaintext",  # plaintext | compatible | safe
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        retry_after_s: float = 5.0,
        retries: int = 3,
    ) -> None:
        self.url = url
        self.token = token
        self.appid = appid
        self.account_id = account_id
        self.mode = mode
        self.crypto = WeChatCrypto(token, encoding_aes_key, appid) if encoding_aes_key else None
        self._session = session
        self.clock = clock
        self.retry_after_s = retry_after_s
        self.retries = retries
        self._next_id = int(clock() * 1000) << 12

    # --- XML builders -------------------------------------------------------------------------------

    def _xml(self, openid: str, msg_type: str, fields: dict[str, str], with_id: bool = True) -> str:
        body = [
            f"<ToUserName>{cdata(self.account_id)}</ToUserName>",
            f"<FromUserName>{cdata(openid)}</FromUserName>",
            f"<CreateTime>{int(self.clock())}</CreateTime>",
            f"<MsgType>{cdata(msg_type)}</MsgType>",
        ]
        body += [f"<{k}>{cdata(v)}</{k}>" for k, v in fields.items()]
        if with_id:
            self._next_id += 1
            body.append(f"<MsgId>{self._next_id}</MsgId>")
        return "<xml>" + "".join(body) + "</xml>"

    def text(self, openid: str, content: str) -> str:
        return self._xml(openid, "text", {"Content": content})

    def image(self, openid: str, media_id: str, pic_url: str = "http://mmbiz.qpic.cn/x") -> str:
        return self._xml(openid, "image", {"PicUrl": pic_url, "MediaId": media_id})

    def location(self, openid: str, lat: float, lng: float, label: str = "") -> str:
        fields = {"Location_X": str(lat), "Location_Y": str(lng), "Scale": "15", "Label": label}
        return self._xml(openid, "location", fields)

    def event(self, openid: str, event: str, key: str = "", **extra: str) -> str:
        fields = {"Event": event, **({"EventKey": key} if key or event != "unsubscribe" else {}), **extra}
        return self._xml(openid, "event", fields, with_id=False)

    def subscribe(self, openid: str, scene: str | None = None) -> str:
        if scene is None:
            return self.event(openid, "subscribe")
        return self.event(openid, "subscribe", f"qrscene_{scene}", Ticket="gQsim")

    def scan(self, openid: str, scene: str) -> str:
        return self.event(openid, "SCAN", scene, Ticket="gQsim")

    def click(self, openid: str, key: str) -> str:
        return self.event(openid, "CLICK", key)

    def unsubscribe(self, openid: str) -> str:
        return self.event(openid, "unsubscribe")

    # --- signing and pushing --------------------------------------------------------------------------

    def sign(
        self, xml: str, *, timestamp: int | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(query, body) of a push, as WeChat would send it in this simulator's mode."""
        ts = str(int(self.clock()) if timestamp is None else timestamp)
        nonce = nonce or str(secrets.randbelow(10**10))
        query = {"signature": signature(self.token, ts, nonce), "timestamp": ts, "nonce": nonce}
        query["openid"] = str(parse_xml(xml).get("FromUserName", ""))
        if self.mode == "plaintext":
            return query, xml.encode()
        if self.crypto is None:
            raise ValueError(f"{self.mode} mode needs an EncodingAESKey")
        envelope = parse_xml(self.crypto.encrypt_message(xml, nonce, ts))
        encrypt = str(envelope["Encrypt"])
        query |= {"encrypt_type": "aes", "msg_signature": signature(self.token, ts, nonce, encrypt)}
        inner = xml[len("<xml>") : -len("</xml>")] if self.mode == "compatible" else ""
        if not inner:
            inner = f"<ToUserName>{cdata(self.account_id)}</ToUserName>"
        return query, f"<xml>{inner}<Encrypt>{cdata(encrypt)}</Encrypt></xml>".encode()

    async def push(self, xml: str) -> SimReply:
        query, body = self.sign(xml)
        return await self.post(query, body)

    async def post(self, query: dict[str, str], body: bytes) -> SimReply:
        """POST one push, re-delivering it when no answer comes within ``retry_after_s``."""
        session = self._session or aiohttp.ClientSession()
        try:
            for attempt in range(1, self.retries + 2):
                try:
                    async with session.post(
                        self.url,
                        params=query,
                        data=body,
                        headers={"Content-Type": "text/xml"},
                        timeout=aiohttp.ClientTimeout(total=self.retry_after_s),
                    ) as resp:
                        answer = await resp.read()
                        return self._read(resp.status, answer, attempt)
                except TimeoutError:
                    continue
            return SimReply(0, b"", None, self.retries + 1)
        finally:
            if self._session is None:
                await session.close()

    def _read(self, status: int, body: bytes, attempts: int) -> SimReply:
        if status != 200 or body.strip() in (b"", b"success"):
            return SimReply(status, body, None, attempts)
        xml = parse_xml(body)
        if "Encrypt" in xml:
            if self.crypto is None:
                raise ValueError("encrypted reply but the simulator has no key")
            parts = (self.token, str(xml["TimeStamp"]), str(xml["Nonce"]), str(xml["Encrypt"]))
            if not signature_ok(parts, str(xml["MsgSignature"])):
                raise ValueError("reply MsgSignature does not verify")
            xml = parse_xml(self.crypto.decrypt_message(xml, str(xml["MsgSignature"]), parts[1], parts[2]))
        content = xml.get("Content")
        return SimReply(status, body, content if isinstance(content, str) else None, attempts, xml)
