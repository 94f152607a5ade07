"""Applications on the shared space: moderation of uploaded images, answers from the collection
(retrieval-augmented, with a language model) and image descriptions."""

from __future__ import annotations

import json
import os
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from xmodal.server.deps import get_service, read_image_upload, require_json, require_multipart
from xmodal.server.routes.search import rooted
from xmodal.server.schemas import (
    AskAnswer,
    AskRequest,
    AskSource,
    Concept,
    DescribeNeighbour,
    DescribeResult,
    Moderation,
    ModerationResult,
)
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


def _source_out(service: Service, source) -> AskSource:
    path = source.path
    if source.id is not None:
        (path,) = service.relative_paths([source.path])
    return AskSource(
        n=source.n,
        id=source.id,
        path=path,
        caption=source.caption,
        ocr=source.ocr,
        score=source.score,
    )


@router.post("/ask", dependencies=[Depends(require_json)])
async def ask(body: AskRequest, service: Service = Depends(get_service)):
    """An answer from the collection: the items that bear on the question (by their images and
    their text) become numbered sources, and the language model answers from them alone.
    With stream=true the reply is NDJSON: {"sources": [...]}, then {"text": "..."} pieces,
    then {"answer": "...", "done": true}."""
    from xmodal.apps.ask import build_prompt, gather_sources

    if body.where is not None:
        from xmodal.server.routes.search import parse_where

        parse_where(json.dumps(body.where))  # a bad filter is a 422 before any work

    def retrieve():
        collection = service.collection
        image = None
        if body.item is not None:
            item = collection.get(body.item)
            path = item and collection.servable_path(item)
            if path is None:
                raise HTTPException(404, f"no item {body.item} with a readable file")
            image = os.fspath(path)
        sources = gather_sources(
            collection,
            body.question,
            image=image,
            k=body.k,
            image_weight=body.image_weight,
            text_weight=body.text_weight,
            where=rooted(body.where, collection.roots),
            include_flagged=body.include_flagged,
        )
        return sources, [_source_out(service, s) for s in sources]

    sources, shown = await service.locked(retrieve)
    messages = build_prompt(body.question, sources)
    context = messages[-1]["content"]
    if not body.generate:
        return AskAnswer(question=body.question, answer=None, sources=shown, context=context)
    llm = await service.llm()
    pieces = llm.generate(messages, max_tokens=body.max_tokens)
    if not body.stream:
        text = await run_in_threadpool(lambda: "".join(pieces).strip())
        return AskAnswer(question=body.question, answer=text, sources=shown, context=context)

    async def lines():
        yield json.dumps({"sources": [s.model_dump() for s in shown]}, ensure_ascii=False) + "\n"
        answer = []
        async for piece in iterate_in_threadpool(pieces):
            answer.append(piece)
            yield json.dumps({"text": piece}, ensure_ascii=False) + "\n"
        done = {"answer": "".join(answer).strip(), "done": True}
        yield json.dumps(done, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/describe", dependencies=[Depends(require_multipart)])
async def describe(
    file: Annotated[UploadFile, File(description="an image file")],
    generate: Annotated[bool, Form(description="false: the template sentence, no LLM")] = True,
    service: Service = Depends(get_service),
) -> DescribeResult:
    """One sentence about an image: the model's best concepts (objects, scene, colour, style),
    the words printed on it, and the collection's nearest captioned items, written up by the
    language model."""
    from xmodal.apps.describe import describe as describe_image
    from xmodal.apps.describe import write_sentence

    upload = await read_image_upload(file)

    def notes():
        from xmodal.errors import ImageLoadError
        from xmodal.images import load_image

        try:  # in full: OCR reads small print
            image = load_image(upload.data, max_pixels=service.settings.max_upload_pixels)
        except ImageLoadError as e:
            raise type(e)(upload.name, e.reason) from None
        return describe_image(image, service.encoder, collection=service.collection)

    d = await service.locked(notes)
    sentence = d.sentence
    if generate:
        llm = await service.llm()
        sentence = await run_in_threadpool(write_sentence, d, llm)
    neighbours = await service.locked(service.relative_paths, [n.path for n in d.neighbours])
    return DescribeResult(
        sentence=sentence,
        concepts=[Concept(group=c.group, text=c.text, score=c.score) for c in d.concepts],
        ocr_text=d.ocr_text,
        neighbours=[
            DescribeNeighbour(id=n.id, path=p, caption=n.caption, score=n.score)
            for n, p in zip(d.neighbours, neighbours)
        ],
    )
