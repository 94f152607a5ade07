"""Test videos built from real photos and real recordings with PyAV.

slideshow(path, [(cat_image, meow, 4.0), (rocket_image, engine, 4.0)]) writes an MP4 that
shows each picture for its seconds while its sound plays (repeated to fill them; None: silence).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from xmodal.audio import resample

RATE = 44_100  # the sound track's sample rate
_AAC_FRAME = 1024  # samples per AAC frame


def video_codec() -> str:
    """H.264 where this FFmpeg build has an encoder for it, else MPEG-4 part 2 (always built in)."""
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not in this build
            continue
    raise RuntimeError("this FFmpeg build has no H.264 or MPEG-4 encoder")


def slideshow(
    path: str | Path,
    parts: list[tuple[Image.Image, tuple[np.ndarray, int] | np.ndarray | None, float]],
    *,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    rotation: int = 0,
) -> Path:
    """Write `parts` (picture, sound, seconds) as an MP4. A sound is (samples, rate) or samples
    at RATE; pictures are resized to `size` (even sides, as yuv420p needs). rotation: a display
    matrix turning the frames counterclockwise, as phones write."""
    import av

    path = Path(path)
    with_sound = any(sound is not None for _, sound, _ in parts)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream(video_codec(), rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        if video.codec_context.name == "libx264":
            video.options = {"preset": "ultrafast", "g": str(fps * 2)}
        else:
            video.bit_rate, video.codec_context.gop_size = 2_000_000, fps * 2
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=RATE, layout="mono") if with_sound else None
        frame_index, sample_index = 0, 0
        for picture, sound, seconds in parts:
            frame = av.VideoFrame.from_image(picture.convert("RGB").resize(size))
            for _ in range(round(seconds * fps)):
                frame.pts = frame_index
                frame_index += 1
                container.mux(video.encode(frame))
            if audio is not None:
                samples = _fill(sound, round(seconds * RATE))
                sample_index = _write_sound(container, audio, samples, sample_index)
        container.mux(video.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))
    return path


def song(path: str | Path, sound: tuple[np.ndarray, int], cover: Image.Image | None = None):
    """An MP4 holding only sound (AAC), with `cover` as its cover art (an attached picture,
    which FFmpeg lists as a one-frame video stream)."""
    import io

    import av

    samples, rate = sound
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=RATE, layout="mono")
        if cover is not None:
            art = container.add_stream("mjpeg")
            art.width, art.height, art.pix_fmt = *cover.size, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        _write_sound(container, stream, resample(np.asarray(samples, np.float32), rate, RATE), 0)
        container.mux(stream.encode(None))
        if cover is not None:
            jpeg = io.BytesIO()
            cover.convert("RGB").save(jpeg, format="JPEG")
            packet = av.Packet(jpeg.getvalue())
            packet.stream, packet.pts, packet.dts = art, 0, 0
            container.mux(packet)
    return Path(path)


def _fill(sound, count: int) -> np.ndarray:
    """The sound at RATE, repeated (or cut) to `count` samples; silence for None."""
    if sound is None:
        return np.zeros(count, np.float32)
    samples, rate = sound if isinstance(sound, tuple) else (sound, RATE)
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = resample(samples, rate, RATE)
    return np.resize(samples, count).astype(np.float32)


def _write_sound(container, stream, samples: np.ndarray, start: int) -> int:
    import av

    for at in range(0, len(samples), _AAC_FRAME):
        chunk = samples[at : at + _AAC_FRAME]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
        frame.rate, frame.pts = RATE, start + at
        container.mux(stream.encode(frame))
    return start + len(samples)


def sound_file(path: str | Path) -> tuple[np.ndarray, int]:
    """A recording's samples (mono float32) and rate."""
    from xmodal.audio import load_audio

    clip = load_audio(str(path))
    return clip.samples, clip.rate
