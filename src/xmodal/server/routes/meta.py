"""Health, metrics and the web page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from xmodal.server.deps import get_service, require_key
from xmodal.server.schemas import Health
from xmodal.server.service import Service

router = APIRouter()


@router.get("/healthz", tags=["meta"])
async def healthz(service: Service = Depends(get_service)) -> Health:
    count = await service.locked(service.collection.count)
    return Health(status="ok", model=service.encoder.name, dim=service.encoder.dim, items=count)


@router.get("/metrics", tags=["meta"], response_class=Response, dependencies=[Depends(require_key)])
async def metrics(service: Service = Depends(get_service)) -> Response:
    """Prometheus text format: requests, latencies, batch sizes, collection size."""
    data = await service.locked(service.metrics.render)
    return Response(data, media_type=service.metrics.content_type)


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def page() -> HTMLResponse:
    html = resources.files("xmodal.server").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html)
