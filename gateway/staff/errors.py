"""Errors and input validation of the staff API.

Every failure is JSON ``{"error": {"code", "message", "field"}}`` with the right 4xx, so a client
(or a person with curl) sees which field was wrong and why. Request bodies and query strings are
checked against the same :class:`Field` declarations the OpenAPI document is generated from
(``openapi.py``), which keeps the document and the code from drifting apart: unknown fields are
rejected, types are strict (``"1"`` is not an integer), strings and bodies have size limits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024  # every JSON body except those carrying a letter scan
MAX_UPLOAD_BODY = 8 * 1024 * 1024  # create-on-behalf with a base64 letter scan


class ApiError(Exception):
    """A refused request: ``status`` is the HTTP status, ``code`` a stable machine word."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.field)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "field": field}}
    return web.json_response(body, status=status)


def not_found(what: str = "ticket") -> ApiError:
    # One message for "does not exist" and "not yours": enumerating ids must reveal nothing.
    return ApiError(404, "not_found", f"no such {what}")


# HTTP errors aiohttp raises itself (no route, wrong method …) mapped to our stable codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """JSON errors for everything under /api/; other paths (healthz, metrics) pass through."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        resp = error_response(exc.status, code, exc.reason or code)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("staff API failure on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


# ---------------------------------------------------------------------------------------------
# Field declarations: validation here, JSON Schema in openapi.py


@dataclass(frozen=True, slots=True)
class Field:
    """One body or query field. ``kind``: string, integer, number, boolean, date (YYYY-MM-DD),
    object (free-form, small), string_list."""

    name: str
    kind: str = "string"
    required: bool = False
    description: str = ""
    max_length: int = 500
    min_length: int = 0
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    nullable: bool = False


def _check_string(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_type", f"{f.name} must be a string", f.name)
    if "\x00" in value:
        raise ApiError(400, "invalid_value", f"{f.name} must not contain NUL characters", f.name)
    stripped = value.strip()
    if f.min_length and len(stripped) < f.min_length:
        raise ApiError(400, "too_short", f"{f.name} must have at least {f.min_length} characters", f.name)
    if len(value) > f.max_length:
        raise ApiError(400, "too_long", f"{f.name} must have at most {f.max_length} characters", f.name)
    if f.enum and value not in f.enum:
        raise ApiError(400, "invalid_value", f"{f.name} must be one of {', '.join(f.enum)}", f.name)
    return stripped if f.min_length else value


def _check_number(f: Field, value: Any) -> float | int:
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    if f.kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ApiError(400, "invalid_type", f"{f.name} must be an integer", f.name)
    if not is_num or (isinstance(value, float) and not math.isfinite(value)):
        raise ApiError(400, "invalid_type", f"{f.name} must be a number", f.name)
    if f.minimum is not None and value < f.minimum:
        raise ApiError(400, "out_of_range", f"{f.name} must be at least {f.minimum:g}", f.name)
    if f.maximum is not None and value > f.maximum:
        raise ApiError(400, "out_of_range", f"{f.name} must be at most {f.maximum:g}", f.name)
    return value  # type: ignore[no-any-return]


def check_value(f: Field, value: Any) -> Any:
    """The validated value of one field (raises :class:`ApiError` naming the field)."""
    if value is None:
        if f.nullable:
            return None
        raise ApiError(400, "invalid_type", f"{f.name} must not be null", f.name)
    if f.kind == "string":
        return _check_string(f, value)
    if f.kind in ("integer", "number"):
        return _check_number(f, value)
    if f.kind == "boolean":
        if not isinstance(value, bool):
            raise ApiError(400, "invalid_type", f"{f.name} must be true or false", f.name)
        return value
    if f.kind == "date":
        text = _check_string(Field(f.name, max_length=10), value)
        try:
            return dt.date.fromisoformat(text) if len(text) == 10 else _bad_date(f)
        except ValueError:
            return _bad_date(f)
    if f.kind == "string_list":
        if not isinstance(value, list) or len(value) > 20:
            raise ApiError(400, "invalid_type", f"{f.name} must be a list of at most 20 strings", f.name)
        return [_check_string(Field(f.name, max_length=f.max_length), v) for v in value]
    raise AssertionError(f"unknown field kind {f.kind}")


def _bad_date(f: Field) -> dt.date:
    raise ApiError(400, "invalid_value", f"{f.name} must be a date YYYY-MM-DD", f.name)


def check_fields(fields: Sequence[Field], data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a decoded body: unknown fields rejected, required present, types strict."""
    known = {f.name: f for f in fields}
    for name in data:
        if name not in known:
            raise ApiError(400, "unknown_field", f"unknown field {name!r}", str(name)[:100])
    out: dict[str, Any] = {}
    for f in fields:
        if f.name in data:
            out[f.name] = check_value(f, data[f.name])
        elif f.required:
            raise ApiError(400, "missing_field", f"{f.name} is required", f.name)
    return out


def _query_value(f: Field, raw: str) -> Any:
    """Query strings are text: convert before the strict check."""
    if f.kind in ("integer", "number"):
        try:
            number = float(raw) if f.kind == "number" else int(raw)
        except ValueError:
            raise ApiError(400, "invalid_type", f"{f.name} must be a {f.kind}", f.name) from None
        return check_value(f, number)
    if f.kind == "boolean":
        if raw not in ("true", "false"):
            raise ApiError(400, "invalid_type", f"{f.name} must be true or false", f.name)
        return raw == "true"
    return check_value(f, raw)


def check_query(fields: Sequence[Field], request: web.Request) -> dict[str, Any]:
    known = {f.name: f for f in fields}
    out: dict[str, Any] = {}
    for name in request.query:
        if name not in known:
            raise ApiError(400, "unknown_field", f"unknown query parameter {name!r}", name[:100])
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, "invalid_value", f"{name} given more than once", name)
        out[name] = _query_value(known[name], request.query[name])
    for f in fields:
        if f.required and f.name not in out:
            raise ApiError(400, "missing_field", f"{f.name} is required", f.name)
    return out


async def read_json(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The request body as a JSON object, refusing oversized, non-JSON and non-object bodies."""
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "too_large", f"body larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"body larger than {limit} bytes")
    if not raw.strip():
        return {}
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream", ""):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    return data
