"""Endpoints that only use the model: embeddings, text-image similarity, zero-shot labels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from xmodal.engine.zeroshot import ZeroShotClassifier, label_prompts, parse_labels
from xmodal.server.deps import get_service, read_image_upload, require_json, require_multipart
from xmodal.server.schemas import (
    Classification,
    Embeddings,
    EmbedTextRequest,
    LabelProbability,
    Similarity,
)
from xmodal.server.service import Service

router = APIRouter(tags=["model"])
MAX_FILES = 32
MAX_LABELS = 200


def _embeddings(service: Service, vectors) -> Embeddings:
    return Embeddings(
        model=service.encoder.name, dim=service.encoder.dim, embeddings=vectors.tolist()
    )


@router.post("/embed/text", dependencies=[Depends(require_json)])
async def embed_text(body: EmbedTextRequest, service: Service = Depends(get_service)) -> Embeddings:
    """Embed texts (any language the model reads) into the shared space."""
    return _embeddings(service, await service.embed_texts(body.texts))


@router.post("/embed/image", dependencies=[Depends(require_multipart)])
async def embed_image(
    file: Annotated[list[UploadFile], File(description=f"image files (at most {MAX_FILES})")],
    service: Service = Depends(get_service),
) -> Embeddings:
    """Embed uploaded images, in the order sent."""
    if len(file) > MAX_FILES:
        raise HTTPException(422, f"at most {MAX_FILES} files per request, got {len(file)}")
    images = [await read_image_upload(f) for f in file]
    return _embeddings(service, await service.embed_images(images))


@router.post("/similarity", dependencies=[Depends(require_multipart)])
async def similarity(
    text: Annotated[str, Form(min_length=1, max_length=10_000)],
    file: Annotated[UploadFile, File(description="an image file")],
    service: Service = Depends(get_service),
) -> Similarity:
    """How well a text describes an image: cosine, and cosine times the model's logit scale."""
    image = await read_image_upload(file)
    text_vec = (await service.embed_texts([text]))[0]
    image_vec = (await service.embed_images([image]))[0]
    cosine = float(text_vec @ image_vec)
    return Similarity(
        model=service.encoder.name, cosine=cosine, score=cosine * service.encoder.logit_scale
    )


@router.post("/classify", dependencies=[Depends(require_multipart)])
async def classify(
    file: Annotated[UploadFile, File(description="an image file")],
    labels: Annotated[
        str, Form(min_length=1, max_length=10_000, description='comma-separated: "cat, dog, car"')
    ],
    service: Service = Depends(get_service),
) -> Classification:
    """Zero-shot: the labels ranked for the image, with softmax probabilities."""
    if len(parse_labels(labels)) > MAX_LABELS:
        raise HTTPException(422, f"at most {MAX_LABELS} labels per request")
    image = await read_image_upload(file)
    prompts = label_prompts(service.encoder, labels)
    prompt_vectors = await service.embed_texts(prompts)
    classifier = ZeroShotClassifier(service.encoder, labels, prompt_vectors=prompt_vectors)
    image_vec = await service.embed_images([image])
    ranked = classifier.rank(image_vec)[0]
    return Classification(
        model=service.encoder.name,
        labels=[LabelProbability(label=r.label, probability=r.score) for r in ranked],
    )
