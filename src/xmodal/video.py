"""Video decoding in one place: a file -> its facts (`probe`) or its segments (`segments`).

A segment is a shot, or at most `every` seconds of one: its key frame (the sharpest frame
sampled in it) and its sound, resampled mono. Cuts are found cheaply: a few frames a second
are sampled and shrunk to a thumbnail, and a large jump between consecutive thumbnails'
colour histograms ends the shot. Frames and sound come from one demux pass over both streams
and each segment is handed over as soon as its sound has arrived, so a long film never sits in
memory: at most one key frame per pending segment and the sound not yet handed over.

Limits (config.Settings): XMODAL_MAX_VIDEO_PIXELS per frame (a frame bomb is refused before
decoding), XMODAL_MAX_VIDEO_SECONDS of duration (a longer file is refused by `probe`;
`segments` stops there when a container's stated duration is wrong).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from xmodal.config import get_settings
from xmodal.errors import InvalidInputError, MissingExtraError, VideoLoadError

# FFmpeg demuxers that hold videos. Anything else FFmpeg happens to open (a JPEG is a one-frame
# "video" to it, a GIF an animation) is not indexed as a video.
_VIDEO_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "mpeg", "ogg")
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "apng", "webp")
# Thumbnails compared for cuts: small enough to be nearly free, big enough for colours.
_THUMB = (48, 27)
_BINS = 16  # per colour channel
# Key frames larger than this on their long side are shrunk: the models see 224-448 px.
_KEY_FRAME_SIDE = 1920
# Segments waiting for their sound are handed over without the rest of it past this lag (a file
# whose sound is muxed far from its frames must not make the queue grow with the film).
_MAX_AUDIO_LAG_S = 10.0


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds; 0.0 when the container does not say
    width: int  # as displayed (rotation applied)
    height: int
    fps: float
    has_audio: bool
    rotation: int = 0  # degrees the frames are turned counterclockwise for display


@dataclass(frozen=True)
class Segment:
    """start..end seconds of a video: its key frame and its sound (None: the video is silent)."""

    start: float
    end: float
    frame: Image.Image  # RGB
    audio: np.ndarray | None  # float32 mono at `rate`
    rate: int


def _av():
    try:
        import av
    except ImportError as e:
        raise MissingExtraError("video decoding", "audio", "av") from e
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's console chatter; errors still raise
    return av


def _one_line(error: BaseException) -> str:
    """FFmpeg's words for an error, without the errno and the path: 'Invalid data found when
    processing input: moov atom not found' (the MP4 index is missing: a cut-short file)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    what = getattr(error, "strerror", None) or text
    _, found, last = text.partition("last error log: ")
    detail = last.split("] ", 1)[-1].strip() if found else ""
    return (f"{what}: {detail}" if detail else what)[:200]


def _open(path: str | os.PathLike):
    """The container, checked to be a video file; VideoLoadError if it is not."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise VideoLoadError(name, "is a folder, not a video file")
    if not os.path.exists(name):
        raise VideoLoadError(name, "no such file")
    if os.path.getsize(name) == 0:
        raise VideoLoadError(name, "empty file (0 bytes)")
    av = _av()
    try:
        container = av.open(name)
    except Exception as e:  # av.error.InvalidDataError and kin, OSError
        raise VideoLoadError(name, f"not a readable video ({_one_line(e)})") from None
    fmt = container.format.name
    if not any(f in fmt for f in _VIDEO_FORMATS) or any(f in fmt for f in _IMAGE_FORMATS):
        container.close()
        kind = "an image" if any(f in fmt for f in _IMAGE_FORMATS) else f"a {fmt} file"
        raise VideoLoadError(name, f"{kind}, not a video")
    if _video_stream(container) is None:
        has_audio = bool(container.streams.audio)
        container.close()
        raise VideoLoadError(
            name, "no video stream (a sound file)" if has_audio else "no video stream"
        )
    return container


def _video_stream(container):
    """The first stream of moving pictures: a song's cover art is a "video" stream too."""
    cover = _av().stream.Disposition.attached_pic
    return next((s for s in container.streams.video if not s.disposition & cover), None)


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def _check_size(name: str, width: int, height: int) -> None:
    limit = get_settings().max_video_pixels
    if width * height > limit:
        raise VideoLoadError(
            name,
            f"frames of {width}x{height} pixels are over the limit of {limit} "
            "(XMODAL_MAX_VIDEO_PIXELS)",
        )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Duration, display size, frame rate and sound of a video; its first frame is decoded, so
    a file that opens but holds nothing decodable is refused here, not halfway through indexing.

    Raises VideoLoadError naming the file and the reason: missing, empty, not a video (an
    image, a sound, text), truncated or corrupt, frames over XMODAL_MAX_VIDEO_PIXELS, longer
    than XMODAL_MAX_VIDEO_SECONDS.
    """
    name = os.fspath(path)
    container = _open(name)
    try:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not (width and height):
            raise VideoLoadError(name, "the video stream has no frame size")
        _check_size(name, width, height)
        duration = _duration(container, stream)
        limit = get_settings().max_video_seconds
        if duration > limit:
            raise VideoLoadError(
                name,
                f"{duration:.0f} s long; the limit is {limit:.0f} s (XMODAL_MAX_VIDEO_SECONDS)",
            )
        first = _first_frame(container, stream)
        if first is None:
            raise VideoLoadError(name, "no decodable video frame (truncated or corrupt)")
        rotation = _rotation(first)
        if rotation % 180:
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(
            duration=duration,
            width=width,
            height=height,
            fps=float(rate) if rate else 0.0,
            has_audio=bool(container.streams.audio),
            rotation=rotation,
        )
    except VideoLoadError:
        raise
    except Exception as e:  # FFmpeg's errors while reading the first packets
        raise VideoLoadError(name, f"not a readable video ({_one_line(e)})") from None
    finally:
        container.close()


def _first_frame(container, stream):
    try:
        for frame in container.decode(stream):
            return frame
    except Exception:  # a damaged stream: no frame then
        return None
    return None


def _rotation(frame) -> int:
    try:
        return round(frame.rotation or 0) % 360
    except Exception:  # no display matrix
        return 0


# -- cutting a stream into segments ----------------------------------------------------------


def _histogram(frame) -> np.ndarray:
    """A frame's colour histogram (per channel, normalised), from a thumbnail."""
    thumb = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="rgb24").to_ndarray()
    bins = thumb >> (9 - _BINS.bit_length())  # 0..255 -> 0.._BINS-1 (_BINS: a power of 2)
    counts = [np.bincount(bins[..., c].ravel(), minlength=_BINS) for c in range(3)]
    return np.concatenate(counts).astype(np.float32) / (thumb.shape[0] * thumb.shape[1] * 3)


def _sharpness(frame) -> float:
    """Variance of the thumbnail's grey Laplacian: blur and fades score low."""
    grey = frame.reformat(width=_THUMB[0] * 2, height=_THUMB[1] * 2, format="gray").to_ndarray()
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def _key_image(frame, rotation: int) -> Image.Image:
    width, height = frame.width, frame.height
    scale = min(1.0, _KEY_FRAME_SIDE / max(width, height))
    if scale < 1.0:
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    image = frame.to_image(width=width, height=height)  # RGB
    return image.rotate(rotation, expand=True) if rotation else image


@dataclass
class _Open:
    """The segment being sampled: where it starts and its best key frame so far."""

    start: float
    frame: object  # the av.VideoFrame kept as the key frame
    sharpness: float


@dataclass
class _Closed:
    start: float
    end: float
    image: Image.Image


class _Sound:
    """The decoded sound not yet handed over, as mono samples from sample `offset` on."""

    def __init__(self, rate: int):
        self.rate = rate
        self.chunks: deque[np.ndarray] = deque()
        self.offset = 0  # index of chunks[0][0] in the whole track
        self.held = 0
        self.origin: float | None = None  # seconds of sample 0 on the video's clock

    def add(self, samples: np.ndarray) -> None:
        if self.origin is None:
            self.origin = 0.0
        self.chunks.append(samples)
        self.held += len(samples)

    @property
    def until(self) -> float:
        """Seconds decoded so far, on the video's clock."""
        if self.origin is None:
            return float("-inf")
        return self.origin + (self.offset + self.held) / self.rate

    def take(self, start: float, end: float) -> np.ndarray:
        """Samples of [start, end), dropping everything before end (segments come in order)."""
        if self.origin is None:
            return np.zeros(0, np.float32)
        first = max(0, round((start - self.origin) * self.rate))
        last = max(0, round((end - self.origin) * self.rate))
        buffer = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        lo, hi = max(0, first - self.offset), max(0, last - self.offset)
        out = buffer[lo:hi].copy()
        rest = buffer[hi:]
        self.chunks = deque([rest] if len(rest) else [])
        self.offset += min(hi, len(buffer))
        self.held = len(rest)
        return out


def segments(
    path: str | os.PathLike,
    rate: int = 16_000,
    *,
    every: float = 10.0,
    threshold: float = 0.3,
    samples_per_second: float = 2.0,
    sound: bool = True,
) -> Iterator[Segment]:
    """The video's segments in order, each handed over as soon as it closes.

    A segment ends at a cut (the colour histograms of consecutive sampled frames differ by more
    than `threshold`, half their L1 distance, 0..1) or after `every` seconds. Boundaries fall on
    sampled frames, so a cut is placed at most 1/samples_per_second after it happened. Each
    segment's sound is resampled to `rate` Hz mono float32 (None for a silent video, and with
    sound=False, when the sound track is not even decoded: for a model that does not hear).
    Raises VideoLoadError as `probe` does; damage halfway through ends the segments there.
    """
    name = os.fspath(path)
    if every <= 0 or samples_per_second <= 0:
        raise InvalidInputError("every and samples_per_second must be positive")
    av = _av()
    container = _open(name)
    try:
        step = 1.0 / samples_per_second
        yield from _cut(av, container, name, rate, every, threshold, step, sound)
    finally:
        container.close()


def _cut(av, container, name, rate, every, threshold, step, hear) -> Iterator[Segment]:
    video = _video_stream(container)
    video.thread_type = "AUTO"  # frame threads: decoding is nearly all of the cost
    _check_size(name, video.codec_context.width, video.codec_context.height)
    audio = container.streams.audio[0] if hear and container.streams.audio else None
    streams = [video] + ([audio] if audio is not None else [])
    origin = container.start_time / 1_000_000 if container.start_time else 0.0
    limit, max_pixels = get_settings().max_video_seconds, get_settings().max_video_pixels
    sound = _Sound(rate) if audio is not None else None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate) if sound else None
    current: _Open | None = None
    previous: np.ndarray | None = None  # the last sampled frame's histogram
    waiting: deque[_Closed] = deque()  # closed segments whose sound is still being decoded
    fps = video.average_rate or video.guessed_rate
    frame_time = 1.0 / float(fps) if fps else step  # the last frame shows this long
    next_sample, last_time, rotation = 0.0, 0.0, 0
    decoded_any = False

    def close(end: float) -> None:
        image = _key_image(current.frame, rotation)
        waiting.append(_Closed(current.start, max(end, current.start), image))

    def ready(flush: bool) -> Iterator[Segment]:
        while waiting and (
            flush
            or sound is None
            or sound.until >= waiting[0].end
            or last_time - waiting[0].end > _MAX_AUDIO_LAG_S
        ):
            done = waiting.popleft()
            samples = None
            if sound is not None:
                samples = sound.take(done.start, done.end)
                samples = samples if len(samples) else None
            yield Segment(done.start, done.end, done.image, samples, rate)

    try:
        for packet in container.demux(streams):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if not decoded_any:
                    raise
                continue  # one damaged packet: the decoder conceals, the rest plays on
            if packet.stream is not video:
                if sound is not None:
                    for frame in frames:
                        if sound.origin is None and frame.time is not None:
                            sound.origin = frame.time - origin
                        for out in resampler.resample(frame):
                            sound.add(out.to_ndarray().reshape(-1).astype(np.float32))
                    yield from ready(False)
                continue
            for frame in frames:
                if frame.time is None:
                    continue
                t = frame.time - origin
                if t > limit or frame.width * frame.height > max_pixels:
                    break  # past the duration limit, or a frame bomb halfway: stop there
                if not decoded_any:
                    decoded_any, rotation = True, _rotation(frame)
                last_time = max(last_time, t)
                if t + 1e-6 < next_sample:
                    continue
                next_sample = (np.floor(t / step + 1e-6) + 1) * step
                hist, sharp = _histogram(frame), _sharpness(frame)
                if current is None:
                    current = _Open(0.0, frame, sharp)
                elif (
                    0.5 * float(np.abs(hist - previous).sum()) > threshold
                    or t - current.start >= every - 1e-6
                ):
                    close(t)  # a cut, or the longest segment
                    current = _Open(t, frame, sharp)
                elif sharp > current.sharpness:
                    current.frame, current.sharpness = frame, sharp
                previous = hist
            else:
                yield from ready(False)
                continue
            break
    except av.error.FFmpegError as e:
        if not decoded_any:
            raise VideoLoadError(name, f"not a readable video ({_one_line(e)})") from None
        # Damaged or cut short halfway: the segments decoded so far stand.
    if sound is not None:
        try:
            for out in resampler.resample(None):
                sound.add(out.to_ndarray().reshape(-1).astype(np.float32))
        except av.error.FFmpegError:
            pass
    if current is None:
        if not decoded_any:
            raise VideoLoadError(name, "no decodable video frame (truncated or corrupt)")
        return
    close(last_time + frame_time)
    yield from ready(True)
