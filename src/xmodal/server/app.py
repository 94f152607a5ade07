"""The FastAPI application: routers, error mapping, middleware, and the lifespan that loads
the model and opens the collection once."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from xmodal.engine.collection import Collection
from xmodal.errors import (
    CollectionBusyError,
    ImageLoadError,
    ImageTooLargeError,
    InvalidInputError,
    ModelLoadError,
    UnsupportedModalityError,
    XmodalError,
)
from xmodal.models.base import Encoder
from xmodal.server.auth import KeyGate
from xmodal.server.metrics import Metrics
from xmodal.server.middleware import BodyLimit, RequestMetrics
from xmodal.server.routes import apps, generate, items, meta, model, search, session
from xmodal.server.security import HostCheck, OriginCheck, SecurityHeaders
from xmodal.server.service import Service
from xmodal.server.settings import ServerSettings, get_server_settings

# Library errors that mean "your input", by HTTP status; anything else is the server's fault.
_CLIENT_ERRORS: list[tuple[type[XmodalError], int]] = [
    (ImageTooLargeError, 413),
    (ImageLoadError, 422),
    (InvalidInputError, 422),
    (UnsupportedModalityError, 422),
    (CollectionBusyError, 503),  # another process (`xmodal index`) is writing: try again later
    # An optional part this install lacks (a missing extra, no language model): the reason says
    # what to install; the rest of the server works.
    (ModelLoadError, 503),
]


def create_app(
    settings: ServerSettings | None = None, *, encoder: Encoder | None = None
) -> FastAPI:
    """The app for `settings` (default: from XMODAL_* environment variables).

    `encoder`: an already loaded model to serve with instead of loading settings.model.
    """
    settings = settings or get_server_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        collection = Collection.open(settings.db, encoder or settings.model, device=settings.device)
        try:
            service = Service(settings, collection, metrics)
        except BaseException:
            collection.close()
            raise
        await service.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="xmodal",
        summary="Search images by text, image or both; embed, compare and classify.",
        version=_version(),
        lifespan=lifespan,
    )
    for router in (
        model.router,
        search.router,
        items.router,
        meta.router,
        session.router,
        apps.router,
        generate.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=resources.files("xmodal.server") / "static"))

    for error, status in _CLIENT_ERRORS:
        app.add_exception_handler(error, _reply(status))

    # Each add wraps the ones before it, so requests meet them from the last added to the first:
    # security headers on every reply, metrics of every request (refused ones too), the Host,
    # then CORS preflights (answered before the key is asked for), the origin of writes, the
    # key, and the body limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(KeyGate, api_key=settings.api_key, public_reads=settings.public_reads)
    app.add_middleware(OriginCheck, cors_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(
        HostCheck,
        bound=settings.host,
        allowed=settings.allowed_hosts,
        api_key=settings.api_key,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    return app


def _reply(status: int):
    async def handler(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status)

    return handler


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xmodal")
    except PackageNotFoundError:
        return "0"
