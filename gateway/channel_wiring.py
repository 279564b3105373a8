"""Building the channel adapters (and, in the sandbox, their loopback fakes) from settings.

Each channel package parses its own settings and offers a sandbox variant pointed at its fake;
this module only decides which to build and hands each adapter its Redis-backed state, the media
store and the shared HTTP session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from channels.base import ChannelAdapter

if TYPE_CHECKING:
    from gateway.components import Gateway


@dataclass
class Built:
    adapters: list[ChannelAdapter] = field(default_factory=list)
    reply_budgets: dict[str, float] = field(default_factory=dict)
    fakes: list[web.AppRunner] = field(default_factory=list)
    email: Any = None


async def build(gw: Gateway, parsed: Mapping[str, Any]) -> Built:
    built = Built()
    await _wechat(gw, parsed.get("wechat"), built)
    await _sms(gw, parsed.get("sms"), built)
    await _email(gw, parsed.get("email"), built)
    return built


async def _wechat(gw: Gateway, settings: Any, built: Built) -> None:
    from channels.wechat import fake
    from channels.wechat.adapter import WeChatAdapter
    from channels.wechat.settings import sandbox_settings
    from store.wechat_state import RedisWeChatState

    if gw.sandbox:
        sandbox = sandbox_settings(gw.settings.data_dir, "http://127.0.0.1", gw.settings.wechat)
        secrets = {a.appid: a.secret for a in sandbox.accounts}
        runner, base_url, _ = await fake.start_sandbox_fake(gw.settings.data_dir, secrets)
        built.fakes.append(runner)
        settings = sandbox_settings(gw.settings.data_dir, base_url, gw.settings.wechat)
    if settings is None:
        return
    state = RedisWeChatState(gw.redis)
    adapter = WeChatAdapter(
        settings,
        replay=state,
        tokens=state,
        addresses=state,
        media_sink=gw.media.save,
        session=gw.session,
        clock=gw.clock,
    )
    built.adapters.append(adapter)
    built.reply_budgets["wechat"] = settings.reply_budget_s


async def _sms(gw: Gateway, settings: Any, built: Built) -> None:
    from channels.sms import fake_twilio
    from channels.sms.adapter import SmsAdapter
    from channels.sms.settings import sandbox_settings
    from store.sms_state import RedisSmsState

    if gw.sandbox:
        probe = sandbox_settings(gw.settings.data_dir, "http://127.0.0.1", gw.settings.public_base_url)
        assert probe.twilio is not None  # the sandbox provider is Twilio
        record = gw.settings.data_dir / "sandbox" / "sms-sent.jsonl"
        record.parent.mkdir(parents=True, exist_ok=True)
        runner, base_url, _ = await fake_twilio.start_fake(
            probe.twilio.account_sid, probe.twilio.auth_token, record
        )
        built.fakes.append(runner)
        settings = sandbox_settings(
            gw.settings.data_dir, base_url, gw.settings.public_base_url, gw.settings.sms
        )
    if settings is None:
        return
    language = gw.settings.tenant.language

    def catalogue_text(key: str) -> str:
        return gw.catalogue.render(key, {}, language, "sms")

    adapter = SmsAdapter(
        settings,
        state=RedisSmsState(gw.redis),
        media_sink=gw.media.save,
        session=gw.session,
        catalogue_text=catalogue_text,
        clock=gw.clock,
    )
    built.adapters.append(adapter)
    built.reply_budgets["sms"] = settings.reply_budget_s


async def _email(gw: Gateway, settings: Any, built: Built) -> None:
    from gateway import email_wiring

    await email_wiring.build(gw, settings, built)
