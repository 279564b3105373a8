"""WeChat settings, the example config, and the CLI commands against real loopback servers:
``wechat qrcode`` and ``wechat menu`` against the fake API, ``simulate wechat`` against a small
aiohttp app serving the sandbox adapter."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from channels.base import Route, WebhookRejected, WebhookRequest
from channels.wechat.adapter import WeChatAdapter
from channels.wechat.fake import FakeWeChat, start_fake, start_sandbox_fake
from channels.wechat.settings import parse_settings, sandbox_settings
from gateway.cli import main
from store.wechat_state import RedisWeChatState
from tests.channels.wechat_kit import MediaShelf

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_APPID = "wxsandbox000000000"


def test_example_config_loads() -> None:
    raw = tomllib.loads((ROOT / "channels/wechat/config.example.toml").read_text(encoding="utf-8"))
    s = parse_settings(raw["wechat"])
    assert [a.path for a in s.accounts] == ["/wechat/main"] and s.accounts[0].mode == "safe"
    assert s.scenes["grid"].attr == "grid" and s.templates["status"].fields["phrase2"] == "{status}"
    assert s.click_command("my_tickets") == "my_tickets"


def test_sandbox_values_from_design_table(tmp_path: Path) -> None:
    s = sandbox_settings(tmp_path, "http://127.0.0.1:9")
    (a,) = s.accounts
    assert (a.path, a.token, a.appid, a.account_id) == (
        "/wechat/sandbox",
        "sandbox",
        SANDBOX_APPID,
        "gh_sandbox",
    )
    assert a.encoding_aes_key == "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    assert s.api_base == "http://127.0.0.1:9" and s.reply_budget_s == 3.0 and s.custom_quota == 5


BAD: list[tuple[dict[str, Any], str]] = [
    (
        {"accounts": [{"name": "m", "account_id": "x", "appid": "wx", "secret": "s", "token": "t"}]},
        "account_id",
    ),
    (
        {
            "accounts": [
                {
                    "name": "m",
                    "account_id": "gh_x",
                    "appid": "wx",
                    "secret": "s",
                    "token": "t",
                    "mode": "safe",
                }
            ]
        },
        "encoding_aes_key",
    ),
    (
        {
            "accounts": [
                {
                    "name": "m",
                    "account_id": "gh_x",
                    "appid": "wx",
                    "secret": "s",
                    "token": "t",
                    "encoding_aes_key": "short",
                }
            ]
        },
        "43",
    ),
    ({"accounts": [{"name": "m", "account_id": "gh_x", "appid": "wx", "token": "t"}]}, "secret"),
    ({"reply_budget_s": 0}, "reply_budget_s"),
    ({"custom_quota": "five"}, "custom_quota"),
    ({"templates": {"status": {"template_id": "T", "fields": {}}}}, "templates.status.fields"),
    ({"menu": [{"name": "x", "type": "miniprogram"}]}, "menu[0].type"),
]


@pytest.mark.parametrize(("raw", "named"), BAD, ids=[b[1] for b in BAD])
def test_bad_settings_name_the_key(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_settings(raw, "wechat")
    assert named in str(err.value) and str(err.value).startswith("wechat")


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SULAI_WECHAT_MAIN_SECRET", "from-env")
    s = parse_settings({"accounts": [{"name": "main", "account_id": "gh_x", "appid": "wx", "token": "t"}]})
    assert s.accounts[0].secret == "from-env"


@pytest.fixture
async def sandbox_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # no stray ./config.toml
    data = tmp_path / "data"
    runner, url, fake = await start_sandbox_fake(data, {SANDBOX_APPID: "sandbox"})
    yield data, url, fake
    await runner.cleanup()


async def test_qrcode_temporary(sandbox_fake: Any, tmp_path: Path) -> None:
    data, _url, fake = sandbox_fake
    out = tmp_path / "grid.png"
    argv = [
        "wechat",
        "qrcode",
        "--scene",
        "grid:0421",
        "--days",
        "7",
        "--out",
        str(out),
        "--data-dir",
        str(data),
    ]
    assert await asyncio.to_thread(main, argv) == 0
    (created,) = fake.qrcodes
    assert created["action_name"] == "QR_STR_SCENE" and created["expire_seconds"] == 7 * 86400
    assert created["action_info"] == {"scene": {"scene_str": "grid:0421"}}
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    record = json.loads((data / "wechat" / "qrcodes.jsonl").read_text(encoding="utf-8"))
    assert record["scene"] == "grid:0421" and record["ticket"] == created["ticket"]


async def test_qrcode_permanent(sandbox_fake: Any, tmp_path: Path) -> None:
    data, _url, fake = sandbox_fake
    argv = [
        "wechat",
        "qrcode",
        "--scene",
        "enterprise",
        "--permanent",
        "--out",
        str(tmp_path / "e.png"),
        "--data-dir",
        str(data),
    ]
    assert await asyncio.to_thread(main, argv) == 0
    assert fake.qrcodes[0]["action_name"] == "QR_LIMIT_STR_SCENE" and "expire_seconds" not in fake.qrcodes[0]


async def test_qrcode_too_long_refused(sandbox_fake: Any) -> None:
    data, _url, fake = sandbox_fake
    argv = ["wechat", "qrcode", "--scene", "g" * 65, "--data-dir", str(data)]
    assert await asyncio.to_thread(main, argv) == 1 and fake.qrcodes == []


async def test_menu(sandbox_fake: Any) -> None:
    data, _url, fake = sandbox_fake
    assert await asyncio.to_thread(main, ["wechat", "menu", "--data-dir", str(data)]) == 0
    buttons = fake.menus[SANDBOX_APPID]["button"]
    assert [b["key"] for b in buttons] == ["new_report", "my_tickets", "help"]
    assert all(b["type"] == "click" for b in buttons)


async def _serve_adapter(adapter: WeChatAdapter) -> tuple[web.AppRunner, str]:
    """A minimal webhook host for the CLI test: parse, then echo the text as a passive reply."""

    async def handle(request: web.Request) -> web.Response:
        req = WebhookRequest(
            request.method, request.path, str(request.url), dict(request.query), {}, await request.read()
        )
        try:
            result = await adapter.parse_webhook(Route(request.method, request.path, "t"), req)
        except WebhookRejected as exc:
            return web.Response(status=exc.status, text=exc.reason)
        texts = [f"echo:{i.text}" for i in result.inbounds if i.text]
        answer = adapter.render_reply(result.context, texts)
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    app = web.Application()
    app.router.add_post("/wechat/sandbox", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/wechat/sandbox"


@pytest.mark.parametrize("mode", ["plaintext", "safe"])
async def test_simulate_text(
    redis_client: aioredis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    fake = FakeWeChat({SANDBOX_APPID: "sandbox"})
    fake_runner, api = await start_fake(fake)
    state = RedisWeChatState(redis_client)
    adapter = WeChatAdapter(
        sandbox_settings(tmp_path, api), replay=state, tokens=state, addresses=state, media_sink=MediaShelf()
    )
    runner, url = await _serve_adapter(adapter)
    try:
        argv = [
            "simulate",
            "wechat",
            "--openid",
            "o123",
            "--url",
            url,
            "--mode",
            mode,
            "--data-dir",
            str(tmp_path),
            "路灯坏了",
        ]
        assert await asyncio.to_thread(main, argv) == 0
    finally:
        await runner.cleanup()
        await adapter.close()
        await fake_runner.cleanup()
    assert capsys.readouterr().out.strip() == "echo:路灯坏了"


async def test_simulator_redelivers_when_no_answer_in_time(tmp_path: Path) -> None:
    """WeChat re-sends a push it got no answer to within 5 s; the simulator does the same
    (here with a 0.3 s deadline), sending the identical signed request again."""
    seen: list[tuple[str, bytes]] = []

    async def slow_first(request: web.Request) -> web.Response:
        seen.append((request.query_string, await request.read()))
        if len(seen) == 1:
            await asyncio.sleep(1.0)
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat/sandbox", slow_first)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    from channels.wechat.simulator import WeChatSimulator

    sim = WeChatSimulator(
        f"http://127.0.0.1:{port}/wechat/sandbox",
        token="sandbox",
        appid=SANDBOX_APPID,
        account_id="gh_sandbox",
        retry_after_s=0.3,
    )
    try:
        reply = await sim.push(sim.text("o123", "路灯坏了"))
    finally:
        await runner.cleanup()
    assert reply.status == 200 and reply.text is None and reply.attempts == 2
    assert len(seen) == 2 and seen[0] == seen[1]
