"""Twilio: signed form webhooks in, TwiML replies, the Messages API out (PROTOCOLS.md B).

Signatures cover the public URL as Twilio called it (configured base + path + query, because a
TLS proxy changes scheme and host) and *all* posted parameters, since Twilio adds parameters
without notice. A request carrying ``X-Twilio-Webhooks-Signature-Settings`` was signed with a
Webhooks SharedKey, possibly with HMAC-SHA256, and is checked with that secret instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp
from multidict import MultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse
from yarl import URL

from channels.base import (
    DeliveryUpdate,
    HttpAnswer,
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
)
from channels.sms.phone import PhoneError, to_e164
from channels.sms.providers import IncomingSms, ProviderPush, missing_fields
from channels.sms.settings import TwilioSettings

INBOUND_FIELDS = ("MessageSid", "AccountSid", "From", "To")
STATUS_FIELDS = ("MessageSid", "AccountSid", "MessageStatus")

OPTED_OUT_CODE = "21610"  # "Attempt to send to unsubscribed recipient"
INVALID_NUMBER_CODES = frozenset({21211, 21214, 21217, 21612, 21614})  # not a (mobile) number
MISCONFIGURED_CODES = frozenset({20003, 20404, 21606, 21659})  # credentials, our From number
# Delivery failures that another attempt on this number will not fix: try another address.
PERMANENT_DELIVERY_CODES = frozenset({"21610", "21211", "21614", "30004", "30005", "30006", "30007"})


class _TimedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's async client with a bounded total time per request (its default is aiohttp's five
    minutes), built inside the running loop as aiohttp requires. ``request`` is overridden only to
    send Basic auth as a header: aiohttp 3.14 deprecates ``BasicAuth`` objects."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(pool_connections=False)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio calls it with this signature)
        allow_redirects: bool = False,
    ) -> Response:
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        assert self.session is not None
        async with self.session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=all_headers,
            allow_redirects=allow_redirects,
        ) as resp:
            return Response(resp.status, await resp.text(), resp.headers)


class TwilioProvider:
    name = "twilio"
    inline_reply = True

    def __init__(
        self,
        settings: TwilioSettings,
        status_callback_url: str,
        media_sink: MediaSink,
        default_region: str = "CN",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.status_callback_url = status_callback_url
        self.media_sink = media_sink
        self.default_region = default_region
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._client: Client | None = None
        self._http: _TimedHttpClient | None = None
        self._token_validator = RequestValidator(settings.auth_token)
        self._shared_validator = RequestValidator(settings.shared_key) if settings.shared_key else None

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", self.settings.webhook_path, "twilio-inbound"),
            Route("POST", self.settings.status_path, "twilio-status"),
        )

    # --- inbound ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> dict[str, str]:
        """Check the signature over all posted parameters; the form as a dict when it holds."""
        signature = request.headers.get("x-twilio-signature", "")
        if not signature:
            raise WebhookRejected(403, "missing X-Twilio-Signature")
        settings_header = request.headers.get("x-twilio-webhooks-signature-settings", "")
        validator, algorithm = self._token_validator, None
        if settings_header:
            if self._shared_validator is None:
                raise WebhookRejected(403, "signed with a shared key, but none is configured")
            validator, algorithm = self._shared_validator, get_signature_algorithm(settings_header)
        params: MultiDict[str] = MultiDict(request.form)
        if not validator.validate(request.public_url, params, signature, algorithm=algorithm):
            raise WebhookRejected(403, "X-Twilio-Signature does not match")
        form = dict(request.form)
        if form.get("AccountSid") and form["AccountSid"] != self.settings.account_sid:
            raise WebhookRejected(404, "unknown AccountSid")
        return form

    async def parse(self, route: Route, request: WebhookRequest) -> ProviderPush:
        form = self.verify(request)
        if route.name == "twilio-status":
            return self._parse_status(form)
        missing = missing_fields(form, INBOUND_FIELDS)
        if missing:
            raise WebhookRejected(400, "missing parameters: " + ", ".join(missing))
        try:
            sender, to = to_e164(form["From"], self.default_region), to_e164(form["To"], self.default_region)
        except PhoneError as exc:
            raise WebhookRejected(400, f"From/To: {exc}") from exc
        media, attrs = await self._media(form)
        attrs["num_segments"] = form.get("NumSegments", "")
        sms = IncomingSms(
            sender=sender,
            to=to,
            text=form.get("Body", ""),
            external_id=form["MessageSid"],
            media=media,
            opt_out_type=form.get("OptOutType", ""),
            attrs=attrs,
        )
        return ProviderPush(messages=(sms,))

    def _parse_status(self, form: dict[str, str]) -> ProviderPush:
        missing = missing_fields(form, STATUS_FIELDS)
        if missing:
            raise WebhookRejected(400, "missing parameters: " + ", ".join(missing))
        status, code = form["MessageStatus"], form.get("ErrorCode", "")
        permanent = status in ("failed", "undelivered") and code in PERMANENT_DELIVERY_CODES
        opted_out: tuple[str, ...] = ()
        if code == OPTED_OUT_CODE and form.get("To"):
            try:
                opted_out = (to_e164(form["To"], self.default_region),)
            except PhoneError:
                opted_out = ()
        update = DeliveryUpdate(
            provider_id=form["MessageSid"],
            status=status,
            error_code=code,
            permanent_failure=permanent,
            address=f"tel:{opted_out[0]}" if opted_out else "",
        )
        return ProviderPush(deliveries=(update,), opted_out=opted_out)

    async def _media(self, form: dict[str, str]) -> tuple[tuple[MediaRef, ...], dict[str, str]]:
        """Download MMS media, authenticated and only from Twilio's media hosts. A failure loses
        the picture, never the text: the citizen can send it again."""
        try:
            count = min(int(form.get("NumMedia", "0") or "0"), 10)
        except ValueError as exc:
            raise WebhookRejected(400, "NumMedia is not a number") from exc
        refs: list[MediaRef] = []
        problems: list[str] = []
        for n in range(count):
            url = form.get(f"MediaUrl{n}", "")
            if not url:
                raise WebhookRejected(400, f"missing parameters: MediaUrl{n}")
            try:
                refs.append(await self._download(url, form.get(f"MediaContentType{n}", "")))
            except _MediaProblem as exc:
                problems.append(f"{n}:{exc}")
        return tuple(refs), ({"media_errors": ";".join(problems)} if problems else {})

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in self.settings.media_hosts

    async def _download(self, url: str, content_type: str) -> MediaRef:
        """Follow at most 3 redirects by hand: every hop must be an allowed host, and the
        credentials go only to the host Twilio named (its CDN links are pre-signed)."""
        headers = {
            "Authorization": aiohttp.encode_basic_auth(self.settings.account_sid, self.settings.auth_token)
        }
        limit = self.settings.media_max_bytes
        try:
            for _ in range(4):
                if not self._allowed(url):
                    raise _MediaProblem("host not allowed")
                async with self._http_session().get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                        target = str(resp.url.join(URL(resp.headers["Location"])))
                        if urlsplit(target).hostname != urlsplit(url).hostname:
                            headers = {}
                        url = target
                        continue
                    if resp.status != 200:
                        raise _MediaProblem(f"HTTP {resp.status}")
                    data = await resp.content.read(limit + 1)
                    kind = content_type or resp.content_type
                    break
            else:
                raise _MediaProblem("too many redirects")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _MediaProblem(type(exc).__name__) from exc
        if len(data) > limit:
            raise _MediaProblem("too large")
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        return await self.media_sink(data, kind, name)

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own_session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._own_session = aiohttp.ClientSession(timeout=timeout)
        return self._own_session

    def render_reply(self, texts: Sequence[str]) -> HttpAnswer:
        reply = MessagingResponse()
        for text in texts:
            reply.message(text)
        return HttpAnswer(200, reply.to_xml().encode("utf-8"), "text/xml")

    # --- outbound -----------------------------------------------------------------------------

    def _api(self) -> Client:
        if self._client is None:
            self._http = _TimedHttpClient(self.settings.timeout_s)
            client = Client(self.settings.account_sid, self.settings.auth_token, http_client=self._http)
            client.api.base_url = self.settings.api_base  # the loopback fake in tests (B.8)
            self._client = client
        return self._client

    async def send(self, to: str, from_: str, outbound: Outbound, message: RenderedMessage) -> SendResult:
        try:
            created = await self._api().messages.create_async(
                to=to, from_=from_, body=message.text, status_callback=self.status_callback_url
            )
        except TwilioRestException as exc:
            raise classify_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(SendErrorCode.TEMPORARY, f"Twilio unreachable: {type(exc).__name__}") from exc
        return SendResult(provider_id=created.sid or "", status=str(created.status or "queued"), path="api")

    def secrets(self) -> Iterable[str]:
        return [s for s in (self.settings.auth_token, self.settings.shared_key) if s]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = self._client = None
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None


class _MediaProblem(Exception):
    pass


def classify_error(exc: TwilioRestException) -> SendError:
    """Twilio's REST error -> our closed set (the dispatcher's retry policy reads only this)."""
    code, status = int(exc.code or 0), int(exc.status or 0)
    text = f"Twilio {status}/{code}: {exc.msg}"
    provider_code = str(code or status)
    if str(code) == OPTED_OUT_CODE:
        return SendError(SendErrorCode.OPTED_OUT, text, provider_code)
    if code in INVALID_NUMBER_CODES:
        return SendError(SendErrorCode.UNREACHABLE, text, provider_code)
    if status == 429 or code == 20429:
        return SendError(SendErrorCode.RATE_LIMITED, text, provider_code, retry_after=1.0)
    if status >= 500:
        return SendError(SendErrorCode.TEMPORARY, text, provider_code)
    if status in (401, 403) or code in MISCONFIGURED_CODES:
        return SendError(SendErrorCode.MISCONFIGURED, text, provider_code)
    return SendError(SendErrorCode.REJECTED, text, provider_code)
