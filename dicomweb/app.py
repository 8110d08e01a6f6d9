"""The gateway's ASGI application: routes, CORS, access log, errors.

:func:`create_app` builds it around a :class:`voxelgate.client.Client`; ``voxelgate
dicomweb`` (:mod:`voxelgate.dicomweb.cli`) serves it with uvicorn. Most handlers are plain
functions: Starlette runs them in a thread of its pool (``GatewaySettings.threads``), where
the client's blocking calls belong; streamed bodies are produced in the same pool. The
frame resources viewers ask for most (a frame's pixels, a rendered frame) are coroutines
awaiting the service on the event loop (:class:`voxelgate.client.AsyncClient`), without
the two thread hops a pooled call costs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from voxelgate.client import Client, HealthStatus
from voxelgate.errors import VoxelgateError

from . import mpr, qido, rendered, stow, wado
from .access import AccessLog
from .errors import HttpError, error_response, handle_http_error, handle_service_error, handle_unexpected
from .settings import GatewaySettings

#: Response headers a browser script may read (CORS exposes none but the simplest by default).
EXPOSED_HEADERS = [
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Content-Location",
    "Warning",
    "X-Voxelgate-Dtype",
    "X-Voxelgate-Shape",
    "X-Voxelgate-Position",
]


def routes() -> list[BaseRoute]:
    """The DICOMweb resources, relative to the service root."""
    st = "/studies/{study}"
    se = st + "/series/{series}"
    inst = se + "/instances/{instance}"
    frames = inst + "/frames/{frames}"
    plane = se + "/mpr/{plane}"
    get = ["GET"]
    return [
        # A frame's pixels and a rendered frame first: viewers ask for them most, and Starlette tries
        # the routes in order (no other route matches their paths).
        Route(frames, wado.frames, methods=get),
        Route(frames + "/rendered", rendered.rendered_frames, methods=get),
        # QIDO-RS
        Route("/studies", qido.studies, methods=get),
        Route("/series", qido.series, methods=get),
        Route("/instances", qido.instances, methods=get),
        Route(st + "/series", qido.series, methods=get),
        Route(st + "/instances", qido.instances, methods=get),
        Route(se + "/instances", qido.instances, methods=get),
        # WADO-RS
        Route(st, wado.retrieve, methods=get),
        Route(se, wado.retrieve, methods=get),
        Route(inst, wado.retrieve, methods=get),
        Route(st + "/metadata", wado.metadata, methods=get),
        Route(se + "/metadata", wado.metadata, methods=get),
        Route(inst + "/metadata", wado.metadata, methods=get),
        Route(inst + "/bulk/{tag:path}", wado.bulk, methods=get),
        # rendered and thumbnails
        Route(inst + "/rendered", rendered.rendered_instance, methods=get),
        Route(inst + "/thumbnail", rendered.rendered_instance, methods=get),
        Route(frames + "/thumbnail", rendered.rendered_frames, methods=get),
        Route(se + "/rendered", rendered.rendered_series, methods=get),
        Route(se + "/thumbnail", rendered.series_thumbnail, methods=get),
        Route(st + "/thumbnail", rendered.study_thumbnail, methods=get),
        # STOW-RS
        Route("/studies", stow.store, methods=["POST"]),
        Route(st, stow.store, methods=["POST"]),
        # the MPR extension
        Route(se + "/mpr", mpr.stacks, methods=get),
        Route(plane, mpr.plane, methods=get),
        Route(plane + "/frames/{frame}", mpr.raw, methods=get),
        Route(plane + "/frames/{frame}/rendered", mpr.rendered, methods=get),
    ]


def health(request: Request) -> Response:
    """``GET /healthz``: 200 when the service answers SERVING, else 503 (for load balancers)."""
    vg: Client = request.app.state.client
    try:
        status = vg.health(timeout=5)
    except VoxelgateError as exc:
        return JSONResponse({"status": "unavailable", "code": exc.code}, status_code=503)
    ok = status == HealthStatus.SERVING
    return JSONResponse({"status": str(status)}, status_code=200 if ok else 503)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, a method a route does not take) as JSON like the others."""
    assert isinstance(exc, HTTPException)
    messages = {404: f"no DICOMweb resource at {request.url.path}", 405: f"{request.method} is not allowed here"}
    text = messages.get(exc.status_code, str(exc.detail))
    code = "NOT_FOUND" if exc.status_code == 404 else "HTTP"
    return error_response(exc.status_code, code, text, dict(exc.headers or {}))


def create_app(client: Client, settings: GatewaySettings | None = None) -> Starlette:
    """The gateway as an ASGI application, calling the service through ``client``.

    The client is the caller's to close. Routes live under ``settings.prefix``;
    ``/healthz`` beside it.
    """
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        yield
        avg = getattr(app.state, "async_client", None)
        if avg is not None:
            await avg.close()

    middleware = [Middleware(AccessLog)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Accept", "Authorization", "Content-Type", "Range", "Accept-Encoding"],
                expose_headers=EXPOSED_HEADERS,
                max_age=600,
            )
        )
    resources = [Mount(settings.prefix, routes=routes())] if settings.prefix else routes()
    app = Starlette(
        routes=[Route("/healthz", health, methods=["GET"]), *resources],
        middleware=middleware,
        exception_handlers={
            VoxelgateError: handle_service_error,
            HttpError: handle_http_error,
            HTTPException: _starlette_error,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.client = client
    app.state.settings = settings
    return app
