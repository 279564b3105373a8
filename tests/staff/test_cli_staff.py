"""``sulai staff add|list|revoke`` against a real Valkey (config names its URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.cli import main
from gateway.staff.auth import authenticate


def test_add_list_revoke(valkey_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{valkey_url}"\n', encoding="utf-8")
    assert main(["staff", "add", "--name", "张三", "--role", "unit", "--unit", "城管局", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token = out[-1]
    assert token.startswith("sulai_") and " " not in token

    async def who() -> object:
        r = aioredis.Redis.from_url(valkey_url)
        try:
            return await authenticate(r, "default", f"Bearer {token}")
        finally:
            await r.aclose()

    staff = asyncio.run(who())
    assert staff is not None and staff.name == "张三" and staff.unit == "城管局"  # type: ignore[attr-defined]
    assert main(["staff", "list", "-c", str(cfg)]) == 0
    listing = capsys.readouterr().out
    assert "张三" in listing and token not in listing
    assert main(["staff", "revoke", staff.id, "-c", str(cfg)]) == 0  # type: ignore[attr-defined]
    assert asyncio.run(who()) is None
    assert (
        main(["staff", "add", "--name", "李四", "--role", "unit", "-c", str(cfg)]) == 2
    )  # unit needs --unit
