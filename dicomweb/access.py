"""The access log: one line per request, without patient data (this module's logger)."""

from __future__ import annotations

import logging
import time

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger(__name__)


class AccessLog:
    """One log line per request: method, the route's template, status, bytes, milliseconds.

    Paths and query strings are left out (UIDs and search keys such as PatientName are
    patient data); the route's template (``/studies/{study}/series/{series}/metadata``) and
    the names of the query parameters say what was asked.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        sent = 0

        async def counting(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            route = scope.get("route")
            template = route.path if isinstance(route, Route) else "(no route)"
            mount = scope.get("root_path", "") if isinstance(route, Route) else ""
            query = scope.get("query_string", b"").decode("latin-1")
            keys = sorted({p.split("=", 1)[0] for p in query.split("&") if p})
            access_log.info(
                "%s %s%s%s %d %d B %.1f ms",
                scope["method"],
                mount,
                template,
                f" ?{','.join(keys)}" if keys else "",
                status,
                sent,
                (time.perf_counter() - start) * 1000,
            )
