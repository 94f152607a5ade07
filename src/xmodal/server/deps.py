"""Dependencies shared by the routes: the service, the API key, upload checks."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request, Security, UploadFile
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xmodal.server.auth import COOKIE, HOW, has_key
from xmodal.server.service import Service, Upload

_BEARER = HTTPBearer(auto_error=False, description="XMODAL_API_KEY as a bearer token")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="XMODAL_API_KEY")
_COOKIE = APIKeyCookie(name=COOKIE, auto_error=False, description="set by POST /login")
# Declared content types that are image files, or that say nothing (then the bytes decide).
_IMAGE_TYPES_PREFIX = "image/"
_UNTYPED = {"", "application/octet-stream"}


def get_service(request: Request) -> Service:
    return request.app.state.service


def require_key(
    request: Request,
    service: Service = Depends(get_service),
    bearer: HTTPAuthorizationCredentials | None = Security(_BEARER),
    header: str | None = Security(_HEADER),
    cookie: str | None = Security(_COOKIE),
) -> None:
    """Write endpoints and /metrics: the API key, when one is set, even with public reads.
    (The security parameters only describe the ways to send it in the OpenAPI schema.)"""
    expected = service.settings.api_key
    if expected is not None and not has_key(request, expected):
        raise HTTPException(
            401, f"this endpoint needs the API key: {HOW}", headers={"WWW-Authenticate": "Bearer"}
        )


def require_multipart(request: Request) -> None:
    _require_type(request, "multipart/form-data")


def require_form(request: Request) -> None:
    _require_type(request, "multipart/form-data", "application/x-www-form-urlencoded")


def require_json(request: Request) -> None:
    _require_type(request, "application/json")


def _require_type(request: Request, *wanted: str) -> None:
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared not in wanted:
        raise HTTPException(415, f"send {' or '.join(wanted)}, not {declared or 'no content type'}")


async def read_image_upload(upload: UploadFile) -> Upload:
    """An uploaded file's bytes, if it was sent as an image (or untyped): else 415."""
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if not (declared.startswith(_IMAGE_TYPES_PREFIX) or declared in _UNTYPED):
        raise HTTPException(
            415, f"{upload.filename or 'upload'}: expected an image file, got {declared}"
        )
    data = await upload.read()
    name = upload.filename or "upload"
    if not data:
        raise HTTPException(422, f"{name}: empty file")
    return Upload(name, data)
