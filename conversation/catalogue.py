"""The message catalogue: every citizen-facing text, keyed, in zh-CN and en (STYLE.md 10).

``conversation/catalogue/<lang>.toml`` holds one table per key with variants: ``text`` (required,
the chat form), ``sms`` (required, short: at most :data:`SMS_MAX_CHARS` characters with realistic
parameters, i.e. two UCS-2 segments), and optionally ``email_subject``, ``email`` and
``wechat_title``. A missing variant falls back to ``text``; a missing key or parameter raises
:class:`CatalogueError`, so a typo is found by the test that renders every key, not by a citizen.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources

VARIANTS = ("text", "sms", "email_subject", "email", "wechat_title")
REQUIRED_VARIANTS = ("text", "sms")
SMS_MAX_CHARS = 134  # two concatenated UCS-2 segments of 67 characters

# Realistic parameter values for length checks (the SMS segment budget, WeChat title limits).
SAMPLE_PARAMS: Mapping[str, str] = {
    "ticket_id": "SNXX-261125-123456-7",
    "surviving_id": "SNXX-261125-123457-5",
    "query_code": "482913",
    "unit": "睢宁县住房和城乡建设局城市管理综合执法大队"[:20],
    "days": "5",
    "deadline": "2026-12-02",
    "status": "assigned",
    "updated": "2026-11-26 09:30",
    "count": "3",
    "description": "小区门口路灯坏了三天，晚上很黑",
    "location": "睢城街道人民路88号",
    "phone": "13812345678",
    "category": "城市管理",
    "company": "睢宁县某某机械制造有限公司",
    "credit_code": "91320324MA1XXXXX0X",
    "name": "张三",
    "menu": "1. 城市管理\n2. 环境保护\n3. 交通出行\n4. 住房建设\n5. 劳动社保\n6. 教育\n7. 医疗卫生\n8. 市场监管\n9. 农业农村\n10. 企业服务\n11. 其他",
    "hint": "例：13812345678",
    "answer": "已安排维修人员于今日下午更换灯具。",
    "resolution": "路灯已于11月26日修复。",
    "reason": "不属于本平台受理范围",
    "question": "请提供路灯杆上的编号或照片。",
    "location_label": "睢宁县人民路88号",
    "rating": "4",
    "channel": "短信",
    "minutes": "30",
    "hours": "24",
    "max_chars": "2000",
    "value": "睢城街道人民路88号",
    "text": "已安排维修人员今日更换灯具。",
    "attempt": "2",
    "into": "SNXX-261125-123457-5",
}


class CatalogueError(LookupError):
    """A key, variant or parameter the catalogue cannot render."""


class _Params(dict[str, str]):
    def __init__(self, key: str, params: Mapping[str, str]) -> None:
        super().__init__(params)
        self.key = key

    def __missing__(self, name: str) -> str:
        raise CatalogueError(f"catalogue key {self.key!r} needs parameter {name!r}")


def _flatten(table: Mapping[str, object], prefix: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    """Dotted keys (``[status.accepted]``) are nested tables in TOML; an entry is a table with a
    ``text`` string."""
    for name, value in table.items():
        if not isinstance(value, Mapping):
            raise CatalogueError(f"catalogue entry {prefix}{name!r} is not a table")
        if isinstance(value.get("text"), str):
            yield f"{prefix}{name}", {str(k): str(v) for k, v in value.items() if not isinstance(v, Mapping)}
        for sub, inner in value.items():
            if isinstance(inner, Mapping):
                yield from _flatten({sub: inner}, f"{prefix}{name}.")


@dataclass(frozen=True, slots=True)
class Catalogue:
    entries: Mapping[str, Mapping[str, Mapping[str, str]]]  # language -> key -> variant -> template
    default_language: str = "zh-CN"

    @classmethod
    def load(cls, languages: tuple[str, ...] = ("zh-CN", "en"), default_language: str = "zh-CN") -> Catalogue:
        """Load the packaged catalogue files."""
        folder = resources.files("conversation").joinpath("catalogue")
        entries = {}
        for lang in languages:
            data = tomllib.loads(folder.joinpath(f"{lang}.toml").read_text(encoding="utf-8"))
            entries[lang] = dict(_flatten(data))
        return cls(entries, default_language)

    def keys(self, language: str | None = None) -> frozenset[str]:
        return frozenset(self.entries[language or self.default_language])

    def params_of(self, key: str, language: str | None = None) -> frozenset[str]:
        """The parameter names a key's variants use."""
        names: set[str] = set()
        for template in self._entry(key, language or self.default_language).values():
            names.update(f for _, f, _, _ in string.Formatter().parse(template) if f)
        return frozenset(names)

    def _entry(self, key: str, language: str) -> Mapping[str, str]:
        table = self.entries.get(language)
        if table is None:
            raise CatalogueError(f"no catalogue for language {language!r}")
        entry = table.get(key)
        if entry is None:
            raise CatalogueError(f"catalogue {language} has no key {key!r}")
        return entry

    def render(
        self, key: str, params: Mapping[str, str], language: str | None = None, variant: str = "text"
    ) -> str:
        if variant not in VARIANTS:
            raise CatalogueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        entry = self._entry(key, language or self.default_language)
        template = entry.get(variant) or entry.get("text")
        if template is None:
            raise CatalogueError(f"catalogue key {key!r} has no text variant")
        try:
            return template.format_map(_Params(key, params))
        except (ValueError, IndexError, AttributeError) as exc:
            raise CatalogueError(f"catalogue key {key!r} ({variant}) is malformed: {exc}") from exc
