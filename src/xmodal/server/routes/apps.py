"""Applications on the shared space: moderation of uploaded images, answers from the collection
(retrieval-augmented, with a language model) and image descriptions."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from xmodal.server.deps import get_service, read_image_upload, require_multipart
from xmodal.server.schemas import Moderation, ModerationResult
from xmodal.server.service import Service

router = APIRouter(tags=["applications"])
MAX_FILES = 32


@router.post("/moderate", dependencies=[Depends(require_multipart)])
async def moderate(
    file: Annotated[list[UploadFile], File(description=f"image files (at most {MAX_FILES})")],
    service: Service = Depends(get_service),
) -> Moderation:
    """Per image: scores per moderation category (zero-shot in the shared space, and open_nsfw
    for sexual content), the categories flagged, and a safe/unsafe verdict."""
    if len(file) > MAX_FILES:
        raise HTTPException(422, f"at most {MAX_FILES} files per request, got {len(file)}")
    uploads = [await read_image_upload(f) for f in file]
    moderator = await service.moderator()

    def decode() -> tuple[list, list]:
        images = [service.decode(u) for u in uploads]
        return images, [service.encoder.prepare_image(image) for image in images]

    images, prepared = await run_in_threadpool(decode)
    vectors = np.asarray(await service.images.submit(prepared))
    verdicts = await run_in_threadpool(moderator.judge, vectors, images)
    return Moderation(
        model=service.encoder.name,
        policy=moderator.fingerprint,
        results=[
            ModerationResult(file=u.name, safe=v.safe, flagged=v.flagged, scores=v.scores)
            for u, v in zip(uploads, verdicts)
        ],
    )
