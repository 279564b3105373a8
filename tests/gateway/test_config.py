"""Config loading: the example file loads, defaults match DESIGN.md, wrong values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, Settings, load_config, settings_from_mapping

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_equals_the_documented_defaults() -> None:
    example = load_config(ROOT / "config.example.toml", env={})
    defaults = load_config(None, env={})
    # The example documents every key with its default value.
    assert example.http == defaults.http
    assert example.tenant == defaults.tenant
    assert example.redis == defaults.redis
    assert example.dispatcher == defaults.dispatcher


def test_defaults_are_the_design_table() -> None:
    s = Settings()
    assert (s.http.public_host, s.http.public_port) == ("127.0.0.1", 8080)
    assert (s.http.staff_host, s.http.staff_port) == ("127.0.0.1", 8081)
    assert (s.smtp.host, s.smtp.port) == ("127.0.0.1", 2525)
    assert s.data_dir == Path("./data")
    assert (s.tenant.id, s.tenant.prefix, s.tenant.timezone, s.tenant.language) == (
        "default",
        "SN",
        "Asia/Shanghai",
        "zh-CN",
    )
    assert s.redis.url == ""
    assert s.public_base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"http": {"public_port": "8080"}}, "http.public_port"),
        ({"http": {"public_port": 70000}}, "http.public_port"),
        ({"http": {"staff_port": 8080}}, "http.staff_port"),
        ({"tenant": {"prefix": "sn1"}}, "tenant.prefix"),
        ({"tenant": {"timezone": "Mars/Olympus"}}, "tenant.timezone"),
        ({"tenant": {"language": "fr"}}, "tenant.language"),
        ({"tenant": {"quiet_hours": "late"}}, "tenant.quiet_hours"),
        ({"tenant": {"colour": "red"}}, "tenant.colour"),
        ({"redis": {"url": "http://x"}}, "redis.url"),
        ({"redis": {"wait_aof": "yes"}}, "redis.wait_aof"),
        ({"unknown_section": {}}, "unknown_section"),
        ({"wechat": "not a table"}, "wechat"),
        ({"data_dir": 5}, "data_dir"),
    ],
)
def test_wrong_values_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(raw, env={})
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


def test_secrets_come_from_the_environment() -> None:
    s = settings_from_mapping({}, env={"SULAI_REDIS_URL": "redis://127.0.0.1:6390/2"})
    assert s.redis.url == "redis://127.0.0.1:6390/2"


def test_missing_and_broken_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\nport=1", encoding="utf-8")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(bad)


def _uncomment(block: str) -> str:
    """The root example's channel blocks, switched on: '# [table]' and '# key = …' lose their '# '."""
    import re

    lines = []
    for line in block.splitlines():
        body = line[2:] if line.startswith("# ") else None
        lines.append(body if body is not None and re.match(r"^(\[|[a-z_]+ *=)", body) else line)
    return "\n".join(lines)


@pytest.mark.parametrize("channel", ["wechat", "sms", "email"])
def test_channel_examples_parse_and_the_root_example_documents_them(channel: str) -> None:
    import tomllib

    from gateway.components import parse_channel_settings

    own = (ROOT / "channels" / channel / "config.example.toml").read_text(encoding="utf-8")
    for text in (own, _uncomment(own)):  # as shipped, and with the optional keys switched on too
        raw = tomllib.loads(text)
        parsed = parse_channel_settings(settings_from_mapping({channel: raw[channel]}, env={}), sandbox=False)
        assert channel in parsed
    # The root example carries the same block, commented out; switched on it is the same table.
    root = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert channel not in tomllib.loads(root)
    assert tomllib.loads(_uncomment(root))[channel] == tomllib.loads(_uncomment(own))[channel]
