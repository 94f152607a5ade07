"""Dependencies shared by the routes: the service, the API key, upload checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Depends, HTTPException, Request, Security, UploadFile
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xmodal.errors import AudioLoadError, UnsupportedModalityError
from xmodal.models.base import AUDIO
from xmodal.server.auth import COOKIE, HOW, has_key
from xmodal.server.filetypes import HEADER_BYTES, describe, sniff, sniff_media
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


# -- sounds ------------------------------------------------------------------------------------
# Bad sound input is a 400 whatever the part that refused it (the model, the container sniff,
# the decoder): the reason says which.
SOUND_FORMATS = "WAV, FLAC, Ogg (Vorbis, Opus), MP3, M4A/AAC, AIFF, WebM or MP4"


def require_hearing(service: Service) -> None:
    """400 unless the served model embeds sound (checked before any upload is read)."""
    if AUDIO not in service.encoder.modalities:
        raise HTTPException(
            400,
            f"model {service.encoder.name} does not hear: sound queries need a model with an "
            "audio tower (serve one with XMODAL_MODEL, e.g. a CLAP checkpoint)",
        )


async def is_sound_upload(upload: UploadFile) -> bool:
    """Whether the bytes of `upload` start like a sound or video container (not an image); the
    declared content type is not trusted. The file is rewound for the reader that follows."""
    header = await upload.read(HEADER_BYTES)
    await upload.seek(0)
    return sniff(header) is None and sniff_media(header) is not None


async def read_audio_upload(upload: UploadFile) -> Upload:
    """An uploaded file's bytes if they start like a sound (or a video, for its sound track):
    else 400 saying what they look like. Browsers declare recordings in many ways (audio/webm,
    video/webm, application/ogg, audio/x-wav), so the bytes decide, not the declared type."""
    data = await upload.read()
    name = upload.filename or "upload"
    if not data:
        raise HTTPException(400, f"{name}: empty file")
    header = data[:HEADER_BYTES]
    if sniff(header) is not None or sniff_media(header) is None:
        raise HTTPException(400, f"{name} {describe(header)}; send {SOUND_FORMATS}")
    return Upload(name, data)


@contextmanager
def sound_errors() -> Iterator[None]:
    """Audio that does not decode, or a model that does not hear, as 400 with the reason."""
    try:
        yield
    except (AudioLoadError, UnsupportedModalityError) as e:
        raise HTTPException(400, str(e)) from None
