"""Map one parsed WeChat push (a dict from ``xmlsafe.parse_xml``) to Sulai's canonical types.

Pure: no I/O. What the push means for the channel state (open a window, mark unreachable, keep
a location, record consent) and which media to download are returned as data; the adapter
carries them out (PROTOCOLS.md A.3 for the fields).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from channels.base import DeliveryUpdate, Inbound, InboundKind, Location, wechat_address
from channels.wechat.settings import Account, WeChatSettings

CHANNEL = "wechat"


class PushRejected(ValueError):
    """A push missing what every push carries; the message names the field."""


@dataclass(frozen=True, slots=True)
class Effect:
    """A channel-state change implied by a push: ``kind`` is message, event, unreachable,
    reachable, location or consent; ``value`` carries its datum."""

    kind: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Mapped:
    inbound: Inbound | None = None
    delivery: DeliveryUpdate | None = None
    effects: tuple[Effect, ...] = ()
    media_ids: tuple[tuple[str, str], ...] = ()  # (WeChat media id, kind) to download now
    address: str = ""  # the citizen's address, also for pushes that yield no Inbound


def _str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key, "")
    return value if isinstance(value, str) else ""


def _required(msg: dict[str, Any], key: str) -> str:
    value = _str(msg, key)
    if not value:
        raise PushRejected(f"missing {key}")
    return value


def entry_point(settings: WeChatSettings, scene: str) -> tuple[str, dict[str, str]]:
    """A QR scene string → (entry point, attrs). ``grid:0421`` with rule grid → attr grid=0421."""
    prefix, _, value = scene.partition(":")
    rule = settings.scenes.get(prefix)
    attrs = {"scene": scene, "intake": rule.intake if rule else settings.default_intake}
    if rule and rule.attr and value:
        attrs[rule.attr] = value
    return scene, attrs


def _float(msg: dict[str, Any], key: str) -> float:
    try:
        return float(_str(msg, key))
    except ValueError:
        raise PushRejected(f"{key} is not a number") from None


def map_push(msg: dict[str, Any], account: Account, settings: WeChatSettings) -> Mapped:
    """The meaning of one decrypted, parsed push. Raises :class:`PushRejected`."""
    mapped = _map(msg, account, settings)
    return replace(mapped, address=wechat_address(account.appid, _str(msg, "FromUserName")))


def _map(msg: dict[str, Any], account: Account, settings: WeChatSettings) -> Mapped:
    openid = _required(msg, "FromUserName")
    created = _required(msg, "CreateTime")
    if not created.isdigit():
        raise PushRejected("CreateTime is not a unix time")
    msg_type = _required(msg, "MsgType")
    base: dict[str, Any] = {
        "channel": CHANNEL,
        "account": account.account_id,
        "tenant": account.tenant,
        "sender": wechat_address(account.appid, openid),
        "received_at": datetime.fromtimestamp(int(created), UTC),
    }
    if msg_type == "event":
        return _event(msg, base, openid, created, settings)
    msg_id = _required(msg, "MsgId")
    base["external_id"] = f"wx:{msg_id}"
    base["raw_ref"] = f"wechat:{account.account_id}:{msg_id}"
    noted = (Effect("message", float(created)),)
    if msg_type == "text":
        return Mapped(Inbound(kind=InboundKind.TEXT, text=_str(msg, "Content"), **base), effects=noted)
    if msg_type == "image":
        attrs = {"pic_url": _str(msg, "PicUrl"), "wechat_media_id": _str(msg, "MediaId")}
        inbound = Inbound(kind=InboundKind.IMAGE, attrs=attrs, **base)
        return Mapped(inbound, effects=noted, media_ids=((_required(msg, "MediaId"), "image"),))
    if msg_type == "voice":
        # Recognition is present only when speech recognition is on; the audio is kept either way.
        attrs = {"format": _str(msg, "Format"), "wechat_media_id": _str(msg, "MediaId")}
        inbound = Inbound(kind=InboundKind.VOICE, text=_str(msg, "Recognition"), attrs=attrs, **base)
        return Mapped(inbound, effects=noted, media_ids=((_required(msg, "MediaId"), "voice"),))
    if msg_type in ("video", "shortvideo"):
        attrs = {"wechat_media_id": _str(msg, "MediaId"), "thumb_media_id": _str(msg, "ThumbMediaId")}
        inbound = Inbound(kind=InboundKind.VIDEO, attrs=attrs, **base)
        return Mapped(inbound, effects=noted, media_ids=((_required(msg, "MediaId"), "video"),))
    if msg_type == "location":
        where = Location(_float(msg, "Location_X"), _float(msg, "Location_Y"), _str(msg, "Label"))
        inbound = Inbound(kind=InboundKind.LOCATION, text=where.label, location=where, **base)
        return Mapped(inbound, effects=(*noted, Effect("location", where)))
    if msg_type == "link":
        attrs = {k.lower(): _str(msg, k) for k in ("Title", "Description", "Url")}
        text = "\n".join(v for v in (attrs["title"], attrs["description"], attrs["url"]) if v)
        return Mapped(Inbound(kind=InboundKind.LINK, text=text, attrs=attrs, **base), effects=noted)
    # An unknown message type still opens the window: the citizen did write to us.
    return Mapped(effects=noted)


def _event(
    msg: dict[str, Any], base: dict[str, Any], openid: str, created: str, settings: WeChatSettings
) -> Mapped:
    event = _required(msg, "Event")
    base["external_id"] = f"wx:{openid}:{created}:{event}"
    base["raw_ref"] = f"wechat:{base['account']}:{base['external_id']}"
    at = float(created)
    key = _str(msg, "EventKey")
    if event == "subscribe":
        scene = key.removeprefix("qrscene_") if key.startswith("qrscene_") else ""
        point, attrs = entry_point(settings, scene) if scene else (None, {})
        inbound = Inbound(kind=InboundKind.EVENT, event="subscribe", entry_point=point, attrs=attrs, **base)
        return Mapped(inbound, effects=(Effect("reachable"), Effect("event", at)))
    if event == "SCAN":
        point, attrs = entry_point(settings, key)
        inbound = Inbound(kind=InboundKind.EVENT, event="scan", entry_point=point, attrs=attrs, **base)
        return Mapped(inbound, effects=(Effect("event", at),))
    if event == "unsubscribe":
        inbound = Inbound(kind=InboundKind.EVENT, event="unsubscribe", **base)
        return Mapped(inbound, effects=(Effect("unreachable", "unsubscribed"),))
    if event == "CLICK":
        attrs = {"click_key": key, "command": settings.click_command(key)}
        inbound = Inbound(kind=InboundKind.EVENT, event="click", attrs=attrs, **base)
        return Mapped(inbound, effects=(Effect("event", at),))
    if event == "VIEW":
        inbound = Inbound(kind=InboundKind.EVENT, event="view", attrs={"url": key}, **base)
        return Mapped(inbound)
    if event == "LOCATION":
        where = Location(_float(msg, "Latitude"), _float(msg, "Longitude"))
        inbound = Inbound(kind=InboundKind.EVENT, event="location", location=where, **base)
        return Mapped(inbound, effects=(Effect("location", where),))
    if event == "TEMPLATESENDJOBFINISH":
        status = _str(msg, "Status")
        ok = status == "success"
        update = DeliveryUpdate(
            provider_id=_str(msg, "MsgID"),
            status="delivered" if ok else "failed",
            error_code="" if ok else status,
            # "failed:user block" is the citizen's refusal: a retry would not help.
            permanent_failure=not ok,
            address=base["sender"],
        )
        return Mapped(delivery=update)
    if event in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
        return Mapped(effects=tuple(Effect("consent", c) for c in _consents(msg, event)))
    if event == "subscribe_msg_sent_event":
        return Mapped(delivery=_subscribe_sent(msg, base["sender"]))
    return Mapped()  # unknown events are accepted and ignored, never an error


def _entries(msg: dict[str, Any], block: str) -> list[dict[str, Any]]:
    container = msg.get(block)
    items = container.get("List", []) if isinstance(container, dict) else []
    items = items if isinstance(items, list) else [items]
    return [i for i in items if isinstance(i, dict)]


def _consents(msg: dict[str, Any], event: str) -> list[tuple[str, bool]]:
    block = "SubscribeMsgPopupEvent" if event == "subscribe_msg_popup_event" else "SubscribeMsgChangeEvent"
    return [
        (_str(i, "TemplateId"), _str(i, "SubscribeStatusString") == "accept")
        for i in _entries(msg, block)
        if _str(i, "TemplateId")
    ]


def _subscribe_sent(msg: dict[str, Any], address: str) -> DeliveryUpdate | None:
    entries = _entries(msg, "SubscribeMsgSentEvent")
    if not entries:
        return None
    e = entries[0]
    ok = _str(e, "ErrorCode") in ("0", "")
    return DeliveryUpdate(
        provider_id=_str(e, "MsgID"),
        status="delivered" if ok else "failed",
        error_code="" if ok else _str(e, "ErrorCode"),
        permanent_failure=not ok,
        address=address,
    )
