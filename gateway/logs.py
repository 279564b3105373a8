"""JSON logs with a request id, and personal data masked before anything is written.

Masking happens in the formatter, over the final text, so no call site can forget it: mobile
numbers become ``138****5678``, WeChat openids keep their first four characters, email addresses
keep their first character and domain. Secret values registered by the adapters (tokens, keys)
are replaced by ``[secret]``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_PHONE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])(o[A-Za-z0-9_-]{3})[A-Za-z0-9_-]{20,}")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_E164 = re.compile(r"(\+\d{1,3})(\d{3,4})\d{4}(\d{2})(?!\d)")


def mask_personal_data(text: str) -> str:
    text = _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)
    text = _E164.sub(lambda m: f"{m.group(1)}{m.group(2)}****{m.group(3)}", text)
    text = _OPENID.sub(lambda m: f"{m.group(1)}***", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class MaskingJsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), as_json: bool = True) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]
        self.as_json = as_json

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.secrets.extend(s for s in secrets if s and len(s) >= 4)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[secret]")
        return mask_personal_data(text)

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id.get(),
            "msg": record.getMessage(),
            **extra,
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            text = json.dumps(payload, ensure_ascii=False, default=str)
        else:
            rest = " ".join(f"{k}={v}" for k, v in extra.items())
            text = f"{payload['ts']} {record.levelname:<7} {record.name}: {payload['msg']} {rest}".rstrip()
            if record.exc_info:
                text += "\n" + str(payload["exc"])
        return self._clean(text)


def setup_logging(
    level: str = "INFO", as_json: bool = True, secrets: Iterable[str] = ()
) -> MaskingJsonFormatter:
    formatter = MaskingJsonFormatter(secrets, as_json)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what our middleware logs, without masking of query strings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return formatter
