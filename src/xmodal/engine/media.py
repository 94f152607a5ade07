"""Sounds and videos in an indexing run: read in the worker threads, embedded in the main one.

A sound is one item: its clip (cut at XMODAL_MAX_AUDIO_SECONDS) is heard by the model, and
what was said becomes its text. A video is a file row plus one item per segment (a shot, or
at most `every` seconds of one): the segment's key frame embedded as an image, mixed with its
sound when the model hears, so "a rocket" finds the seconds where the rocket is on screen.
Videos stream through the decoder one segment at a time: a long film never sits in memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from xmodal.audio import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, Clip, is_audio_file, load_audio
from xmodal.models.base import AUDIO, IMAGE, Encoder, Heard, l2_normalize

# A segment's vector: its key frame's plus this much of its sound's (when the model hears).
# The picture leads: a shot is mostly what is on screen; the sound adds what is heard there.
VIDEO_SOUND_WEIGHT = 0.4
# Segments embedded per model call while a video streams through.
_SEGMENT_BATCH = 8
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class AudioInput:
    """A sound read and decoded by a worker: the model hears it in the main thread."""

    clip: Clip


@dataclass(frozen=True)
class VideoInput:
    """A video probed by a worker; its segments are decoded while they are embedded."""

    path: bytes
    duration: float
    width: int
    height: int


@dataclass(frozen=True)
class VideoPart:
    """One embedded segment of a video."""

    start: float
    end: float
    width: int
    height: int
    vector: np.ndarray
    heard: Heard | None


def is_video_file(path: bytes | str) -> bool:
    return os.path.splitext(os.fsdecode(path))[1].lower() in VIDEO_EXTENSIONS


def media_extensions(modalities: frozenset[str]) -> frozenset[str]:
    """The sound and video extensions a model with these modalities indexes: videos need
    pictures (their sound is used when the model hears too), sounds need hearing."""
    out: set[str] = set()
    if AUDIO in modalities:
        out |= AUDIO_EXTENSIONS
    # Videos are decoded by PyAV (xmodal.video): without it they are not scanned at all.
    if IMAGE in modalities and importlib.util.find_spec("av") is not None:
        out |= VIDEO_EXTENSIONS
    return frozenset(out)


def is_media(path: bytes) -> bool:
    return is_audio_file(path) or is_video_file(path)


def hash_file(path: bytes) -> tuple[bytes, os.stat_result]:
    """The content hash of a (possibly huge) file read in chunks, and its stat as read."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.digest(), st


def read_audio(path: bytes, encoder: Encoder) -> AudioInput:
    """Decode a sound for `encoder` (AudioLoadError if unreadable); long ones are cut."""
    return AudioInput(load_audio(os.fsdecode(path), rate=encoder.audio_rate, truncate=True))


def read_video(path: bytes) -> VideoInput:
    from xmodal.video import probe

    info = probe(os.fsdecode(path))
    return VideoInput(path, info.duration, info.width, info.height)


def embed_video(video: VideoInput, encoder: Encoder) -> Iterator[VideoPart]:
    """The video's segments, embedded a few at a time as they are decoded."""
    from xmodal.video import segments

    hears = AUDIO in encoder.modalities
    rate = encoder.audio_rate if hears else 16_000
    batch = []
    for segment in segments(os.fsdecode(video.path), rate=rate, sound=hears):
        batch.append(segment)
        if len(batch) >= _SEGMENT_BATCH:
            yield from _embed_segments(batch, encoder, hears)
            batch = []
    if batch:
        yield from _embed_segments(batch, encoder, hears)


def _embed_segments(batch: list, encoder: Encoder, hears: bool) -> Iterator[VideoPart]:
    pictures = encoder.embed_images([s.frame for s in batch])
    sounds: dict[int, Heard] = {}
    if hears:
        with_sound = [i for i, s in enumerate(batch) if s.audio is not None and len(s.audio)]
        heard = encoder.hear([(batch[i].audio, batch[i].rate) for i in with_sound], truncate=True)
        sounds = dict(zip(with_sound, heard, strict=True))
    for i, segment in enumerate(batch):
        vector = pictures[i]
        heard = sounds.get(i)
        if heard is not None:
            vector = l2_normalize(vector + VIDEO_SOUND_WEIGHT * heard.vector)
        width, height = segment.frame.size
        yield VideoPart(segment.start, segment.end, width, height, vector, heard)
