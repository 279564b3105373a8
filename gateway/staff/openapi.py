"""The OpenAPI 3 document of the staff API, generated from the route table (routes.ROUTES).

Because the router and the validators read the same :class:`RouteSpec` and :class:`Field`
declarations, the document cannot drift from the code: a field added to a route appears here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gateway.staff.errors import Field
from gateway.staff.routing import API, RouteSpec

OPENAPI_PATH = API + "/openapi.json"
_PARAM_RE = re.compile(r"\{(\w+)\}")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}


def field_schema(f: Field) -> dict[str, Any]:
    schema: dict[str, Any]
    if f.kind == "string":
        schema = {"type": "string", "maxLength": f.max_length}
        if f.min_length:
            schema["minLength"] = f.min_length
            schema["pattern"] = r"\S"
        if f.enum:
            schema = {"type": "string", "enum": list(f.enum)}
    elif f.kind in ("integer", "number"):
        schema = {"type": f.kind}
        if f.minimum is not None:
            schema["minimum"] = f.minimum
        if f.maximum is not None:
            schema["maximum"] = f.maximum
    elif f.kind == "boolean":
        schema = {"type": "boolean"}
    elif f.kind == "date":
        schema = {"type": "string", "format": "date"}
    elif f.kind == "string_list":
        schema = {"type": "array", "items": {"type": "string", "maxLength": f.max_length}, "maxItems": 20}
    else:
        raise AssertionError(f.kind)
    if f.description:
        schema["description"] = f.description
    return schema


def body_schema(fields: Sequence[Field]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: field_schema(f) for f in fields},
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def operation(spec: RouteSpec) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}}
        for name in _PARAM_RE.findall(spec.path)
    ]
    params += [
        {"name": f.name, "in": "query", "required": f.required, "schema": field_schema(f)} for f in spec.query
    ]
    if spec.mutating:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a repeat with the same key returns the first result",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
    ok_content = (
        {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        if spec.binary
        else {"application/json": {"schema": {"type": "object"}}}
    )
    op: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": list(spec.tags),
        "parameters": params,
        "responses": {
            str(spec.ok_status): {"description": "success", "content": ok_content},
            "400": _error("invalid input (the field is named)"),
            "401": _error("no or invalid bearer token"),
            "403": _error("the role may not do this"),
            "404": _error("no such object, or not visible to this member"),
            "409": _error("not possible in the current state"),
            "413": _error("body too large"),
            "415": _error("body is not JSON"),
            "422": _error("well-formed but unacceptable"),
        },
        "x-sulai-action": spec.action,
    }
    if spec.body is not None:
        op["requestBody"] = {
            "required": bool([f for f in spec.body if f.required]),
            "content": {"application/json": {"schema": body_schema(spec.body)}},
        }
    return op


def document(routes: Sequence[RouteSpec], version: str = "1.0.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(spec.full_path, {})[spec.method.lower()] = operation(spec)
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sulai staff API", "version": version},
        "paths": paths,
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
