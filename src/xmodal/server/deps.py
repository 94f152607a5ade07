"""Dependencies shared by the routes: the service, the API key, upload checks."""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, Security, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xmodal.server.service import Service, Upload

_bearer = HTTPBearer(auto_error=False, description="XMODAL_API_KEY as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="XMODAL_API_KEY")
# Declared content types that are image files, or that say nothing (then the bytes decide).
_IMAGE_TYPES_PREFIX = "image/"
_UNTYPED = {"", "application/octet-stream"}


def get_service(request: Request) -> Service:
    return request.app.state.service


def require_key(
    service: Service = Depends(get_service),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    header: str | None = Security(_header),
) -> None:
    """Write endpoints: the API key, when one is set, as a bearer token or X-API-Key."""
    expected = service.settings.api_key
    if expected is None:
        return
    given = header or (bearer.credentials if bearer else None)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401,
            "this endpoint needs the API key: Authorization: Bearer KEY or X-API-Key: KEY",
            headers={"WWW-Authenticate": "Bearer"},
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
