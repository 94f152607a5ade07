"""The rows the catalog stores and returns: items, file rows, file and skip states, item kinds.

A video's segments are rows of their own whose stored path is the video's path, a NUL (which no
real path holds) and the segment's start: unique per segment, and the video is recovered from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGE_KIND = "image"
TEXT_KIND = "text"
AUDIO_KIND = "audio"
VIDEO_KIND = "video"
_SEGMENT_MARK = b"\x00"


def segment_path(video: bytes, start: float) -> bytes:
    return video + _SEGMENT_MARK + f"{start:.3f}".encode()


def file_path(stored: bytes) -> bytes:
    """The file a stored path names: a video segment's video, else the path itself."""
    return stored.partition(_SEGMENT_MARK)[0]


@dataclass(frozen=True)
class Item:
    """One indexed item as the Python API, CLI and server show it: an image, a text, a sound,
    or a video segment (path: the video; start and end: its time range in seconds)."""

    id: int
    path: str  # os.fsdecode of the stored bytes: opens the file even when not valid UTF-8
    size: int
    mtime: float  # seconds since the epoch
    width: int
    height: int
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = IMAGE_KIND
    duration: float | None = None  # seconds of a sound or a video
    start: float | None = None  # a video segment's time range
    end: float | None = None


@dataclass(frozen=True)
class FileRow:
    """What the indexer writes for one file (its vector goes beside it)."""

    path: bytes
    size: int
    mtime_ns: int
    hash: bytes
    width: int
    height: int
    caption: str | None = None  # from sidecar files
    embedded: str = ""  # descriptions embedded in the file (EXIF, XMP, IPTC, PNG text)
    caption_stamp: str = ""  # the sidecars' sizes and mtimes (xmodal.itemtext.sidecar_stamp)
    kind: str = IMAGE_KIND
    body: str = ""  # a text item's content; what a sound says
    duration: float | None = None
    parent: int | None = None  # a video segment's video
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class FileState:
    id: int
    size: int
    mtime_ns: int
    hash: bytes


@dataclass(frozen=True)
class SkipState:
    size: int
    mtime_ns: int
    reason: str
