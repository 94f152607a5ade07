"""Endpoints that only use the model: embeddings, text-image (or text-sound) similarity,
zero-shot labels. Sounds need a model that hears; every bad sound input is a 400 with its
reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from xmodal.engine.zeroshot import SOUND_TEMPLATES, ZeroShotClassifier, label_prompts, parse_labels
from xmodal.server.deps import (
    get_service,
    is_sound_upload,
    read_audio_upload,
    read_image_upload,
    require_hearing,
    require_json,
    require_multipart,
    sound_errors,
)
from xmodal.server.schemas import (
    AudioEmbeddings,
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


@router.post("/embed/audio", dependencies=[Depends(require_multipart)])
async def embed_audio(
    file: Annotated[list[UploadFile], File(description=f"sound files (at most {MAX_FILES})")],
    service: Service = Depends(get_service),
) -> AudioEmbeddings:
    """Embed uploaded sounds, in the order sent, with what they say when the model transcribes.

    Any container FFmpeg reads (WAV, FLAC, Ogg, MP3, M4A, AIFF, WebM, MP4: told by the bytes).
    A clip longer than XMODAL_MAX_AUDIO_SECONDS is embedded from its start up to the limit, as
    indexing does (`truncated` says so); 400 for a model that does not hear, a file that is not
    a sound, or one that does not decode."""
    require_hearing(service)
    if len(file) > MAX_FILES:
        raise HTTPException(422, f"at most {MAX_FILES} files per request, got {len(file)}")
    sounds = [await read_audio_upload(f) for f in file]
    with sound_errors():
        clips, heard = await service.hear(sounds)
    transcripts = [h.transcript for h in heard]
    return AudioEmbeddings(
        model=service.encoder.name,
        dim=service.encoder.dim,
        embeddings=[h.vector.tolist() for h in heard],
        transcripts=transcripts if any(transcripts) else None,
        seconds=[round(c.seconds, 3) for c in clips],
        truncated=[c.truncated for c in clips],
    )


async def _image_or_sound(service: Service, upload: UploadFile):
    """(the upload's vector, whether it is a sound): told apart by the bytes."""
    if await is_sound_upload(upload):
        require_hearing(service)
        sound = await read_audio_upload(upload)
        with sound_errors():
            return (await service.embed_audio([sound]))[0], True
    image = await read_image_upload(upload)
    return (await service.embed_images([image]))[0], False


@router.post("/similarity", dependencies=[Depends(require_multipart)])
async def similarity(
    text: Annotated[str, Form(min_length=1, max_length=10_000)],
    file: Annotated[UploadFile, File(description="an image or sound file")],
    service: Service = Depends(get_service),
) -> Similarity:
    """How well a text describes an image (or a sound, with a model that hears): cosine, and
    cosine times the model's logit scale."""
    vector, _ = await _image_or_sound(service, file)
    text_vec = (await service.embed_texts([text]))[0]
    cosine = float(text_vec @ vector)
    return Similarity(
        model=service.encoder.name, cosine=cosine, score=cosine * service.encoder.logit_scale
    )


@router.post("/classify", dependencies=[Depends(require_multipart)])
async def classify(
    file: Annotated[UploadFile, File(description="an image or sound file")],
    labels: Annotated[
        str, Form(min_length=1, max_length=10_000, description='comma-separated: "cat, dog, car"')
    ],
    service: Service = Depends(get_service),
) -> Classification:
    """Zero-shot: the labels ranked for the image (or the sound, with a model that hears:
    prompted as "the sound of a ..."), with softmax probabilities."""
    if len(parse_labels(labels)) > MAX_LABELS:
        raise HTTPException(422, f"at most {MAX_LABELS} labels per request")
    vector, is_sound = await _image_or_sound(service, file)
    templates = SOUND_TEMPLATES if is_sound else None
    prompts = label_prompts(service.encoder, labels, templates)
    prompt_vectors = await service.embed_texts(prompts)
    classifier = ZeroShotClassifier(
        service.encoder, labels, templates, prompt_vectors=prompt_vectors
    )
    ranked = classifier.rank(vector[None, :])[0]
    return Classification(
        model=service.encoder.name,
        labels=[LabelProbability(label=r.label, probability=r.score) for r in ranked],
    )
