"""Audio loading in one place: any path, upload or array -> a mono float32 Clip, or AudioLoadError.

Every reader of sound in xmodal goes through `load_audio`, as every reader of images goes
through images.load_image: formats, channels, sample rates, duration limits and damaged files
are handled the same way everywhere.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import numpy as np

from xmodal.config import get_settings
from xmodal.errors import AudioLoadError, InvalidInputError, MissingExtraError

_MIN_RATE, _MAX_RATE = 1_000, 384_000
_BLOCK = 1 << 16  # frames decoded per read while a long file streams in
# More channels than this in an array is taken for a (channels, n) array passed the wrong way
# round, which would otherwise be "mixed" into a handful of samples.
_MAX_CHANNELS = 64
# libsndfile's log line for a WAV or AIFF whose sound chunk is shorter than its header says,
# e.g. "data : 13840 (should be 56)"; it reads what is there without an error.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND) : (\d+) \(should be (\d+)\)", re.MULTILINE)
# Chunk sizes a streaming writer leaves in the header when it does not know the length.
_UNKNOWN_SIZE = 0x7FFFFFFF
# Bytes a chunk may lack and still be whole: a missing pad byte, a last partial frame.
_SLACK = 64

# Files the indexer treats as sounds (decoded by libsndfile, else by FFmpeg through PyAV).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
)


# Files the indexer treats as videos (segments of frames and sound, xmodal.video); listed here
# because a video's sound track is read like any sound.
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"})


@dataclass(frozen=True)
class Clip:
    """Mono samples in [-1, 1] at `rate` Hz. `duration` is the file's whole length, which is
    longer than the samples when the clip was cut at a limit (`truncated`)."""

    samples: np.ndarray  # float32, 1-D
    rate: int
    duration: float
    truncated: bool = False

    @property
    def seconds(self) -> float:
        """Length of the samples held (<= duration)."""
        return len(self.samples) / self.rate


# A path, the bytes of a file (an upload), (samples, rate) with samples 1-D or (n, channels),
# or a Clip.
AudioSource = str | os.PathLike | bytes | tuple[np.ndarray, int] | Clip


def load_audio(
    source: AudioSource,
    *,
    rate: int | None = None,
    max_seconds: float | None = None,
    truncate: bool = False,
) -> Clip:
    """Decode `source` to a mono float32 Clip, resampled to `rate` (None: keep the file's).

    max_seconds: the longest audio accepted, defaults to get_settings().max_audio_seconds
    (XMODAL_MAX_AUDIO_SECONDS). Longer audio raises AudioLoadError, or with truncate=True is
    cut at the limit (Clip.truncated), decoding no more than that (a long file never sits in
    memory whole).
    Raises AudioLoadError naming the source and the reason for anything that is not readable
    audio: empty, corrupt or truncated data, an image or text file, no audio stream, silence
    of zero length, NaN/inf samples, a sample rate outside 1 kHz..384 kHz.
    """
    limit = get_settings().max_audio_seconds if max_seconds is None else max_seconds
    if rate is not None and not _MIN_RATE <= rate <= _MAX_RATE:
        raise InvalidInputError(f"rate={rate}: give a sample rate in 1 kHz..384 kHz")
    if isinstance(source, Clip):
        name, samples, src_rate, duration = "<clip>", source.samples, source.rate, source.duration
    elif isinstance(source, tuple):
        name = "<samples>"
        samples, src_rate, duration = _from_array(source)
    elif isinstance(source, (bytes, bytearray)):
        name = "<bytes>"
        if not source:
            raise AudioLoadError(name, "empty data (0 bytes)")
        samples, src_rate, duration = _decode(name, io.BytesIO(bytes(source)), limit)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if os.path.isdir(name):
            raise AudioLoadError(name, "is a folder, not a sound file")
        if not os.path.exists(name):
            raise AudioLoadError(name, "no such file")
        if os.path.isfile(name) and os.path.getsize(name) == 0:
            raise AudioLoadError(name, "empty file (0 bytes)")
        samples, src_rate, duration = _decode(name, name, limit)
    else:
        raise AudioLoadError(
            f"<{type(source).__name__}>",
            "give a path, bytes, (samples, rate) or a Clip",
        )
    if not _MIN_RATE <= src_rate <= _MAX_RATE:
        raise AudioLoadError(name, f"sample rate {src_rate} Hz is outside 1 kHz..384 kHz")
    if samples.size == 0:
        raise AudioLoadError(name, "no audio samples (zero length)")
    if not np.isfinite(samples).all():
        raise AudioLoadError(name, "the samples contain NaN or infinity")
    truncated = False
    if len(samples) > limit * src_rate:
        if not truncate:
            # The decoders stop just past the limit, so the length is the file's, not the
            # samples'.
            length = max(duration, len(samples) / src_rate)
            raise AudioLoadError(
                name,
                f"{length:.1f} s long; the limit is {limit:g} s (XMODAL_MAX_AUDIO_SECONDS)",
            )
        samples, truncated = samples[: int(limit * src_rate)], True
    truncated = truncated or (isinstance(source, Clip) and source.truncated)
    if rate is not None and rate != src_rate:
        samples, src_rate = resample(samples, src_rate, rate), rate
    duration = max(duration, len(samples) / src_rate)
    return Clip(np.ascontiguousarray(samples, dtype=np.float32), src_rate, duration, truncated)


def _from_array(pair: tuple) -> tuple[np.ndarray, int, float]:
    if len(pair) != 2:
        raise AudioLoadError("<samples>", "give (samples, rate)")
    try:
        samples, rate = np.asarray(pair[0]), int(pair[1])
    except (TypeError, ValueError, OverflowError) as e:
        raise AudioLoadError("<samples>", f"give (samples, rate): {_one_line(e)}") from None
    kind = samples.dtype.kind
    if kind not in "iuf":
        raise AudioLoadError("<samples>", f"samples must be numbers, not {samples.dtype}")
    # Integers scale as libsndfile scales PCM (full scale is 2**(bits-1)), so an int16 array
    # and the WAV it came from give the same floats.
    if kind == "i":
        samples = samples / float(-np.iinfo(samples.dtype).min)
    elif kind == "u":
        half = float(np.iinfo(samples.dtype).max // 2 + 1)
        samples = (samples - half) / half
    samples = samples.astype(np.float32)
    if samples.ndim == 2:
        if samples.shape[1] > _MAX_CHANNELS:
            raise AudioLoadError(
                "<samples>",
                f"shape {samples.shape} has {samples.shape[1]} channels (at most "
                f"{_MAX_CHANNELS}); give (n, channels), e.g. samples.T for (channels, n)",
            )
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioLoadError(
            "<samples>", f"samples must be 1-D or (n, channels), not {samples.shape}"
        )
    return samples, rate, len(samples) / max(rate, 1)


def _decode(name: str, source, limit: float) -> tuple[np.ndarray, int, float]:
    """libsndfile first (WAV, FLAC, OGG, Opus, AIFF, MP3), FFmpeg (PyAV) for the rest."""
    try:
        import soundfile
    except ImportError as e:
        raise MissingExtraError("audio decoding", "audio", "soundfile") from e
    try:
        with soundfile.SoundFile(source) as f:
            rate = f.samplerate
            duration = f.frames / rate if rate else 0.0
            _check_complete(name, f, duration)
            wanted = int(min(f.frames, (limit + 1) * rate)) if rate else 0
            data = f.read(wanted, dtype="float32", always_2d=True)
        return data.mean(axis=1), rate, duration
    except (RuntimeError, soundfile.LibsndfileError, ValueError, EOFError, OSError) as first:
        if hasattr(source, "seek"):
            source.seek(0)
        return _decode_av(name, source, limit, first)


def _check_complete(name: str, f, duration: float) -> None:
    """A WAV or AIFF cut short (a partial download or copy) reads without error in libsndfile,
    as whatever fragment is there; refuse it, as a truncated image is refused."""
    for declared, present in _SHORT_CHUNK.findall(f.extra_info):
        declared, present = int(declared), int(present)
        if present + _SLACK < declared < _UNKNOWN_SIZE:
            raise AudioLoadError(
                name,
                f"truncated: the header declares {declared} bytes of sound, the file holds "
                f"{present} ({duration:.2f} s)",
            )


def _decode_av(name: str, source, limit: float, first: Exception):
    try:
        import av
    except ImportError:
        raise AudioLoadError(name, f"not a readable sound file ({_one_line(first)})") from None
    try:
        av.logging.set_level(av.logging.PANIC)
        with av.open(source) as container:
            if not container.streams.audio:
                raise AudioLoadError(name, "no audio stream in the file")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            if not rate:
                raise AudioLoadError(name, "no sample rate in the audio stream")
            duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
            if not duration and container.duration:
                duration = container.duration / 1_000_000
            # Planar float in the file's own layout, mixed to mono here as libsndfile's path
            # mixes (the mean of the channels): FFmpeg's own stereo->mono downmix is 3 dB
            # louder, and a sound would change level with the decoder that read it.
            resampler = av.AudioResampler(format="fltp", rate=rate)
            chunks, held = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
                    held += len(chunks[-1])
                if held > (limit + 1) * rate:
                    break
            else:  # the resampler holds back the last few samples until flushed
                chunks.extend(out.to_ndarray().mean(axis=0) for out in resampler.resample(None))
    except AudioLoadError:
        raise
    except Exception as e:  # FFmpeg's errors (av.error.*), OSError, ValueError
        raise AudioLoadError(name, f"not a readable sound file ({_av_reason(e)})") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return samples, int(rate), duration


def _av_reason(error: BaseException) -> str:
    """FFmpeg's message without the file name it repeats (AudioLoadError names the source)."""
    filename = getattr(error, "filename", None)
    text = str(error).replace(f": {filename!r}", "") if filename else str(error)
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)
    return text.splitlines()[0][:200] if text else type(error).__name__


def _one_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 samples at from_rate -> at to_rate (band-limited; soxr when installed)."""
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    try:
        import soxr

        return soxr.resample(samples, from_rate, to_rate).astype(np.float32, copy=False)
    except ImportError:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(from_rate), int(to_rate))
        out = resample_poly(samples, int(to_rate) // g, int(from_rate) // g)
        return out.astype(np.float32, copy=False)


def is_audio_file(path: bytes | str) -> bool:
    """Whether the indexer treats `path` as a sound, by its extension."""
    return os.path.splitext(os.fsdecode(path))[1].lower() in AUDIO_EXTENSIONS
