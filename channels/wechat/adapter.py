"""The WeChat Official Account adapter: verify and parse pushes, render passive replies, send.

Order of checks on a push (each failure is a WebhookRejected and never reaches the engine):
size (413) → URL signature (403) → timestamp window (403) → XML safety (400) → msg_signature and
decryption with the current, then the previous EncodingAESKey (403) → ToUserName (403) →
required push fields (400) → nonce replay (403). The nonce claim and the push's first
channel-state effect (the window a message opens) share one Redis round trip.
The reply to an encrypted push is encrypted with the key that opened it (PROTOCOLS.md A.2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from wechatpy.crypto import WeChatCrypto

from channels.base import (
    Capabilities,
    DeliveryUpdate,
    HttpAnswer,
    Inbound,
    MediaRef,
    MediaSink,
    Outbound,
    RenderedMessage,
    Route,
    SendError,
    SendErrorCode,
    SendResult,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
)
from channels.wechat.api import WeChatApi, WeChatApiError
from channels.wechat.crypto import DecryptFailed, Keyring, encrypt_reply, signature_ok
from channels.wechat.inbound import Effect, Mapped, PushRejected, map_push
from channels.wechat.outbound import Sender
from channels.wechat.settings import Account, WeChatSettings
from channels.wechat.state import AddressBook, ReplayGuard, TokenCache
from channels.wechat.xmlsafe import XmlRejected, cdata, parse_xml

log = logging.getLogger(__name__)

# WeChat retries unless the body is empty or "success" (PROTOCOLS.md A.4).
ACK = HttpAnswer(200, b"success", "text/plain")


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What render_reply needs: who to answer, and the cipher that opened the push (None: plain)."""

    openid: str
    account_id: str
    nonce: str
    cipher: WeChatCrypto | None


class WeChatAdapter:
    name = "wechat"
    # A passive/customer-service text holds 2048 bytes: ~680 CJK characters; keep a margin.
    capabilities = Capabilities(max_text_chars=600, inline_reply=True, media=True)

    def __init__(
        self,
        settings: WeChatSettings,
        *,
        replay: ReplayGuard,
        tokens: TokenCache,
        addresses: AddressBook,
        media_sink: MediaSink,
        session: aiohttp.ClientSession | None = None,
        api_base: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._replay = replay
        self._tokens = tokens
        self._addresses = addresses
        self._media_sink = media_sink
        self._session = session
        self._own_session = session is None
        self._api_base = (api_base or settings.api_base).rstrip("/")
        self._clock = clock
        self._keyrings = {
            a.name: Keyring.build(a.token, a.appid, a.encoding_aes_key, a.previous_encoding_aes_key)
            for a in settings.accounts
        }
        self._apis: dict[str, WeChatApi] = {}
        self._sender = Sender(settings, addresses, clock)

    # --- contract ---------------------------------------------------------------------------------

    def routes(self) -> Sequence[Route]:
        out = []
        for a in self.settings.accounts:
            out += [
                Route("GET", a.path, f"wechat:{a.name}:verify"),
                Route("POST", a.path, f"wechat:{a.name}"),
            ]
        return out

    def secrets(self) -> Iterable[str]:
        for a in self.settings.accounts:
            yield from (s for s in (a.secret, a.token, a.encoding_aes_key, a.previous_encoding_aes_key) if s)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def api(self, account: Account) -> WeChatApi:
        """The API client of one account (also used by the CLI for QR codes and the menu)."""
        if account.name not in self._apis:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._apis[account.name] = WeChatApi(
                self._session,
                self._api_base,
                tenant=account.tenant,
                appid=account.appid,
                secret=account.secret,
                tokens=self._tokens,
                use_stable_token=self.settings.use_stable_token,
            )
        return self._apis[account.name]

    # --- inbound ----------------------------------------------------------------------------------

    async def parse_webhook(self, route: Route, request: WebhookRequest) -> WebhookResult:
        account = self.settings.account_by_path(request.path) or self.settings.account_by_path(route.path)
        if account is None:
            raise WebhookRejected(404, f"no WeChat account at {request.path}")
        if len(request.body) > self.settings.max_body_bytes:
            raise WebhookRejected(413, f"body larger than {self.settings.max_body_bytes} bytes")
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not signature_ok((account.token, timestamp, nonce), q.get("signature", "")):
            raise WebhookRejected(403, "bad signature")
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > self.settings.timestamp_window_s:
            raise WebhookRejected(403, "timestamp outside the accepted window")
        if request.method == "GET":
            # URL verification: echo echostr verbatim (no decryption for Official Accounts).
            return WebhookResult(answer=HttpAnswer(200, q.get("echostr", "").encode(), "text/plain"))
        msg, cipher = self._open(account, request)
        if msg.get("ToUserName") != account.account_id:
            raise WebhookRejected(403, "ToUserName is not this account")
        try:
            mapped = map_push(msg, account, self.settings)  # pure: nothing happens before the claim
        except PushRejected as exc:
            raise WebhookRejected(400, f"bad push: {exc}") from None
        effects = mapped.effects
        fingerprint = hashlib.sha256(request.body).hexdigest()[:32]
        ttl = 2 * self.settings.timestamp_window_s
        claim = (account.tenant, account.name, nonce, fingerprint, ttl)
        if effects and effects[0].kind in ("message", "event"):
            # The common push: claim the nonce and note the window in one round trip.
            first = (effects[0].kind, mapped.address, float(effects[0].value))
            fresh = await self._replay.first_use_noting(*claim, note=first)
            effects = effects[1:]
        else:
            fresh = await self._replay.first_use(*claim)
        if not fresh:
            raise WebhookRejected(403, "nonce replayed with another body")
        for effect in effects:
            await self._apply_one(account.tenant, mapped.address, effect)
        inbound = await self._download(account, mapped) if mapped.inbound else None
        context = ReplyContext(str(msg.get("FromUserName", "")), account.account_id, nonce, cipher)
        deliveries: tuple[DeliveryUpdate, ...] = (mapped.delivery,) if mapped.delivery else ()
        return WebhookResult(inbounds=(inbound,) if inbound else (), deliveries=deliveries, context=context)

    def _open(self, account: Account, request: WebhookRequest) -> tuple[dict[str, Any], WeChatCrypto | None]:
        """Parse, and decrypt when the push is encrypted: (message dict, cipher that worked)."""
        try:
            outer = parse_xml(request.body)
        except XmlRejected as exc:
            raise WebhookRejected(400, str(exc)) from None
        q = request.query
        if q.get("encrypt_type", "raw") != "aes":
            if account.mode == "safe":
                raise WebhookRejected(403, "account is in safe mode: plaintext push refused")
            return outer, None
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise WebhookRejected(400, "encrypted push without Encrypt")
        if not signature_ok(
            (account.token, q.get("timestamp", ""), q.get("nonce", ""), encrypt), q.get("msg_signature", "")
        ):
            raise WebhookRejected(403, "bad msg_signature")
        try:
            plain, cipher = self._keyrings[account.name].decrypt(encrypt)
        except DecryptFailed as exc:
            raise WebhookRejected(403, exc.reason) from None
        try:
            return parse_xml(plain), cipher
        except XmlRejected as exc:
            raise WebhookRejected(400, f"decrypted payload: {exc}") from None

    async def _apply_one(self, tenant: str, address: str, effect: Effect) -> None:
        book = self._addresses
        if effect.kind == "message":
            await book.note_message(tenant, address, effect.value)
        elif effect.kind == "event":
            await book.note_event(tenant, address, effect.value)
        elif effect.kind == "unreachable":
            await book.set_unreachable(tenant, address, effect.value)
        elif effect.kind == "reachable":
            await book.clear_unreachable(tenant, address)
        elif effect.kind == "location":
            await book.set_location(tenant, address, effect.value)
        elif effect.kind == "consent":
            template_id, accepted = effect.value
            if accepted:
                long_term = any(
                    s.long_term for s in self.settings.subscriptions.values() if s.template_id == template_id
                )
                await book.add_consent(tenant, address, template_id, long_term)
            else:
                await book.revoke_consent(tenant, address, template_id)

    async def _download(self, account: Account, mapped: Mapped) -> Inbound:
        """Fetch media now (WeChat keeps it 3 days); a failure keeps the message, noted in attrs."""
        inbound = mapped.inbound
        assert inbound is not None
        refs: list[MediaRef] = []
        attrs = dict(inbound.attrs)
        for media_id, kind in mapped.media_ids:
            try:
                body, ctype = await asyncio.wait_for(
                    self.api(account).media_get(media_id), self.settings.media_timeout_s
                )
                if ctype == "application/json":  # video answered with a link, not bytes
                    attrs["video_url"] = body.decode()
                    continue
                refs.append(await self._media_sink(body, ctype, f"{media_id}.{_ext(ctype, kind)}"))
            except (WeChatApiError, TimeoutError, OSError) as exc:
                log.warning("wechat media %s not downloaded: %s", kind, exc)
                attrs["media_error"] = str(exc)[:200]
        if not refs and attrs == dict(inbound.attrs):
            return inbound
        return dataclasses.replace(inbound, media=(*inbound.media, *refs), attrs=attrs)

    # --- replies and sends --------------------------------------------------------------------------

    def render_reply(self, context: object, texts: Sequence[str]) -> HttpAnswer:
        """One passive text reply (WeChat takes one per push), or ``success`` when nothing to say."""
        if not texts or not isinstance(context, ReplyContext) or not context.openid:
            return ACK
        now = str(int(self._clock()))
        xml = (
            f"<xml><ToUserName>{cdata(context.openid)}</ToUserName>"
            f"<FromUserName>{cdata(context.account_id)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(fit_bytes(chr(10).join(texts)))}</Content></xml>"
        )
        if context.cipher is not None:
            xml = encrypt_reply(context.cipher, xml, context.nonce, now)
        return HttpAnswer(200, xml.encode(), "application/xml")

    async def send(self, outbound: Outbound, message: RenderedMessage) -> SendResult:
        scheme, _, rest = outbound.recipient.partition(":")
        appid, _, openid = rest.partition(":")
        account = self.settings.account_by_appid(appid) if scheme == "wechat" and openid else None
        if account is None:
            raise SendError(
                SendErrorCode.MISCONFIGURED, f"no WeChat account for {outbound.recipient.split(':')[1]}"
            )
        return await self._sender.send(self.api(account), account.tenant, outbound, message)


REPLY_MAX_BYTES = 2048  # WeChat's limit on a text message's content, in UTF-8 bytes


def fit_bytes(text: str, limit: int = REPLY_MAX_BYTES) -> str:
    """Cut a reply to WeChat's byte limit on a character boundary, marking the cut with "…"."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[: limit - len("…".encode())].decode("utf-8", "ignore")
    return cut + "…"


def _ext(content_type: str, kind: str) -> str:
    return {"image/jpeg": "jpg", "image/png": "png", "audio/amr": "amr", "video/mp4": "mp4"}.get(
        content_type, {"image": "jpg", "voice": "amr", "video": "mp4"}.get(kind, "bin")
    )
