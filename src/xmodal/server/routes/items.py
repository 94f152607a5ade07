"""Items of the collection: add (upload or server-side path), remove, read, thumbnail, file.

Files are addressed by item id only, never by a path from the client, and served only when
their real location (links resolved) lies inside an indexed folder. Sounds and videos are
served with HTTP Range support (206 Partial Content, 416 for a range past the end) so that
<audio> and <video> can seek; a video segment's file is its whole video.
"""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Body,
    Depends,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Response,
    UploadFile,
)
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from xmodal.catalog import AUDIO_KIND, VIDEO_KIND, Item
from xmodal.errors import AudioLoadError
from xmodal.scan import is_under
from xmodal.server.deps import (
    get_service,
    read_image_upload,
    require_json,
    require_key,
    require_multipart,
)
from xmodal.server.filetypes import HEADER_BYTES, sniff, sniff_media
from xmodal.server.schemas import ItemInfo
from xmodal.server.security import FILE_CSP, MEDIA_CSP
from xmodal.server.service import Service

router = APIRouter(prefix="/items", tags=["items"])
ItemId = Annotated[int, Path(ge=0, le=2**63 - 1)]


async def item_out(service: Service, item: Item) -> ItemInfo:
    def read() -> tuple[str, str, list[str] | None]:
        collection = service.collection
        (path,) = service.relative_paths([item.path])
        text = collection.item_texts([item.id]).get(item.id)
        verdict = collection.verdict(item.id)
        return path, text.ocr if text else "", verdict[0] if verdict else None

    path, ocr, flagged = await service.locked(read)
    return ItemInfo(
        id=item.id,
        path=path,
        width=item.width,
        height=item.height,
        size=item.size,
        caption=item.caption,
        metadata=item.metadata,
        type=item.kind,
        ocr=ocr or None,
        flagged=flagged,
        duration=item.duration,
        start=item.start,
        end=item.end,
        thumbnail=None if item.kind == AUDIO_KIND else f"/items/{item.id}/thumbnail",
        file=f"/items/{item.id}/file",
    )


async def _item(service: Service, item_id: int) -> Item:
    item = await service.locked(service.collection.get, item_id)
    if item is None:
        raise HTTPException(404, f"no item {item_id}")
    return item


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(require_key), Depends(require_multipart)],
    responses={403: {"description": "path outside the indexed folders"}},
)
async def add_item(
    file: Annotated[UploadFile | None, File(description="an image to store and index")] = None,
    path: Annotated[
        str | None,
        Form(
            min_length=1, max_length=4096, description="a file on the server, in an indexed folder"
        ),
    ] = None,
    service: Service = Depends(get_service),
) -> ItemInfo:
    """Index one image now: an upload (kept in the collection's upload folder) or a file
    already on the server under an indexed folder."""
    if (file is None) == (path is None):
        raise HTTPException(422, "send either a file or a path, not both or neither")
    if file is not None:
        upload = await read_image_upload(file)
        await run_in_threadpool(service.decode, upload)  # refuse bad images before storing
        target = await run_in_threadpool(service.store_upload, upload)
        if not await service.locked(service.collection.contains_path, target):
            await service.writing(service.collection.add_root, service.uploads)
        item = await service.add_path(target, max_pixels=service.settings.max_upload_pixels)
    else:
        if "\0" in path or not os.path.isabs(path):
            raise HTTPException(422, "path must be an absolute path on the server")
        if not await service.locked(service.collection.contains_path, path):
            raise HTTPException(403, "path is not inside an indexed folder")
        item = await service.add_path(path)
    return await item_out(service, item)


@router.get("/{item_id}")
async def get_item(item_id: ItemId, service: Service = Depends(get_service)) -> ItemInfo:
    return await item_out(service, await _item(service, item_id))


@router.put("/{item_id}/metadata", dependencies=[Depends(require_key), Depends(require_json)])
async def set_metadata(
    item_id: ItemId,
    metadata: Annotated[dict[str, Any], Body(examples=[{"album": "trip", "year": 2024}])],
    service: Service = Depends(get_service),
) -> ItemInfo:
    """Replace an item's metadata (a JSON object; search can filter on it with `where`)."""
    if not await service.writing(service.collection.set_metadata, item_id, metadata):
        raise HTTPException(404, f"no item {item_id}")
    return await item_out(service, await _item(service, item_id))


@router.delete("/{item_id}", status_code=204, dependencies=[Depends(require_key)])
async def delete_item(item_id: ItemId, service: Service = Depends(get_service)) -> Response:
    """Forget an item. An uploaded file is deleted too; a file of an indexed folder stays on
    disk (and comes back at that folder's next `xmodal index`)."""
    item = await _item(service, item_id)
    await service.writing(service.collection.remove, item_id)
    if is_under(os.fsencode(item.path), os.fsencode(service.uploads)):
        with contextlib.suppress(OSError):  # already gone: nothing to clean
            os.unlink(item.path)
    return Response(status_code=204)


async def _servable(service: Service, item_id: int):
    item = await _item(service, item_id)
    path = await service.locked(service.collection.servable_path, item)
    if path is None:
        raise HTTPException(403, f"item {item_id}'s file is not inside an indexed folder")
    return item, path


@router.get(
    "/{item_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "no such item, or a sound (sounds have no picture)"},
        422: {"description": "the file no longer decodes"},
    },
)
async def thumbnail(
    item_id: ItemId,
    size: Annotated[int, Query(ge=16, le=1024)] = 256,
    service: Service = Depends(get_service),
) -> Response:
    """A JPEG of the image, or of a video segment's middle frame."""
    item, path = await _servable(service, item_id)
    if item.kind == AUDIO_KIND:
        raise HTTPException(404, f"item {item_id} is a sound: sounds have no thumbnail")
    try:
        data = await run_in_threadpool(service.thumbnail, item, path, size)
    except AudioLoadError as e:  # a video that no longer decodes (images raise ImageLoadError)
        raise HTTPException(422, str(e)) from None
    headers = {"Cache-Control": "private, max-age=3600", "Content-Security-Policy": FILE_CSP}
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{item_id}/file",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/*": {}, "audio/*": {}, "video/*": {}}},
        206: {"description": "the byte range asked for (Range: bytes=...)"},
        415: {"description": "the file on disk is no longer of the item's kind"},
        416: {"description": "a range past the end of the file"},
    },
)
async def item_file(item_id: ItemId, service: Service = Depends(get_service)) -> FileResponse:
    """The item's file as stored, typed by its content (never by its name), never rendered as
    a page: `nosniff` and a sandboxing Content-Security-Policy. Byte ranges are honoured (a
    browser seeks in a sound or a video with them); a video segment's file is its video."""
    item, path = await _servable(service, item_id)
    kind = await run_in_threadpool(_file_kind, path, item.kind)
    media = item.kind in (AUDIO_KIND, VIDEO_KIND)
    if kind is None:
        shown = f"a {item.kind} any more" if media else "an image of an allowed format"
        raise HTTPException(415, f"item {item_id}'s file is not {shown}")
    media_type, extension = kind
    headers = {
        "Content-Security-Policy": MEDIA_CSP if media else FILE_CSP,
        "Cache-Control": "private, no-cache",
    }
    return FileResponse(
        path,
        media_type=media_type,
        filename=path.stem + extension,
        content_disposition_type="inline",
        headers=headers,
    )


def _file_kind(path, item_kind: str) -> tuple[str, str] | None:
    """(media type, extension) of the file as its bytes say, if they fit the item's kind."""
    try:
        with open(path, "rb") as fp:
            header = fp.read(HEADER_BYTES)
    except OSError:
        return None
    if item_kind not in (AUDIO_KIND, VIDEO_KIND):
        image = sniff(header)
        return (image.media_type, image.extension) if image else None
    media = sniff_media(header)
    if media is None:
        return None
    if item_kind == AUDIO_KIND and media.video:
        # Sound in a video container (an M4A written as MP4, a WebM recording): an <audio>
        # plays it under the audio type.
        return media.media_type.replace("video/", "audio/"), media.extension
    return media.media_type, media.extension
