"""POST /generate: an image drawn until the server's model finds it close to the prompt.

One drawing at a time: it holds the CPU (or GPU) for seconds to minutes, so a second request
waits its turn rather than halving both. Steps and size are capped for a shared server.
"""

from __future__ import annotations

import io
import threading
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from xmodal.server.deps import get_service, require_json
from xmodal.server.service import Service

router = APIRouter(tags=["applications"])
MAX_STEPS = 500
MAX_SIZE = 512
_one_at_a_time = threading.Lock()  # held in the worker thread: any event loop, any app


class GenerateRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=1000, examples=["a lighthouse at night"])
    drawer: Literal["pixels", "strokes"] = "pixels"
    steps: int = Field(100, ge=1, le=MAX_STEPS)
    size: int = Field(224, ge=32, le=MAX_SIZE)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    negatives: list[str] = Field(default_factory=list, max_length=16)
    cutouts: int = Field(16, ge=1, le=64)


@router.post(
    "/generate",
    dependencies=[Depends(require_json)],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the drawing as a PNG"}},
)
async def generate_image(body: GenerateRequest, service: Service = Depends(get_service)):
    """Draw the prompt ("sea^2 | boat" weights, negatives subtracted) with the server's model;
    the PNG comes back with the model's similarity before and after in X-Similarity-Start and
    X-Similarity. 422 for a model that cannot draw (ONNX, one that does not see)."""
    from xmodal.generate import GenerateOptions, generate

    options = GenerateOptions(
        drawer=body.drawer,
        steps=body.steps,
        size=body.size,
        seed=body.seed,
        negatives=tuple(body.negatives),
        cutouts=body.cutouts,
    )

    def draw():
        with _one_at_a_time:
            return generate(body.prompt, service.encoder, options)

    result = await run_in_threadpool(draw)
    out = io.BytesIO()
    result.image.save(out, format="PNG")
    return Response(
        out.getvalue(),
        media_type="image/png",
        headers={
            "X-Similarity": f"{result.similarity:.4f}",
            "X-Similarity-Start": f"{result.start_similarity:.4f}",
        },
    )
