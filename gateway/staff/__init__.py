"""The staff API (``/api/v1/…`` on the staff app): dispatch, reply, resolve, survey, statistics.

The lead's wiring calls :func:`setup_staff_api` once on the staff app, before it starts.
"""

from __future__ import annotations

from aiohttp import web

from gateway.staff.context import StaffContext
from gateway.staff.openapi import OPENAPI_PATH, document
from gateway.staff.routes import ROUTES
from gateway.staff.routing import dumps, install

__all__ = ["ROUTES", "StaffContext", "setup_staff_api"]


def setup_staff_api(app: web.Application, ctx: StaffContext) -> None:
    """Register every ``/api/v1`` route and the OpenAPI document on the staff app."""
    install(app, ctx, ROUTES)
    doc = document(ROUTES)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(doc, dumps=dumps)

    app.router.add_get(OPENAPI_PATH, openapi, name="getOpenApi")
