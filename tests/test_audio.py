"""Decoding sound (xmodal.audio.load_audio): a real stereo recording written by the test into
every format xmodal treats as audio, read back and compared with the original; paths, bytes and
arrays giving the same clip; and the bad inputs, each refused with an AudioLoadError that says
why. Real recordings from Debian packages (sound-theme-freedesktop, asterisk-core-sounds-en-wav).
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate, correlation_lags, resample_poly

from xmodal import audio
from xmodal.audio import AUDIO_EXTENSIONS, load_audio
from xmodal.errors import AudioLoadError, InvalidInputError

sf = pytest.importorskip("soundfile")
av = pytest.importorskip("av")

FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
ASTERISK = Path("/usr/share/asterisk/sounds/en")
RATE = 48_000


def _need(path: Path, package: str) -> Path:
    if not path.exists():
        pytest.skip(f"needs the Debian package {package} (.ci/run installs it): {path}")
    return path


@pytest.fixture(scope="module")
def stereo() -> np.ndarray:
    """A real stereo recording, (n, 2) float32 at 48 kHz: "front left" spoken in the left
    channel and "front right" in the right (two recordings of the sound theme), so that one
    channel alone correlates with the mono mix at only ~0.7 and a mixdown is visible."""
    left, rate_l = sf.read(
        _need(FREEDESKTOP / "audio-channel-front-left.oga", "sound-theme-freedesktop"),
        dtype="float32",
    )
    right, rate_r = sf.read(FREEDESKTOP / "audio-channel-front-right.oga", dtype="float32")
    assert rate_l == rate_r == RATE and left.ndim == right.ndim == 1
    n = min(len(left), len(right))
    return np.stack([left[:n], right[:n]], axis=1)


@pytest.fixture(scope="module")
def mono(stereo) -> np.ndarray:
    return stereo.mean(axis=1)


@pytest.fixture(scope="module")
def voice() -> Path:
    """A real telephone prompt: 8 kHz mono 16-bit WAV."""
    return _need(ASTERISK / "vm-goodbye.wav", "asterisk-core-sounds-en-wav")


# ---------------------------------------------------------------------------------------------
# Writers: libsndfile through soundfile, FFmpeg through PyAV.


def _sf_writer(fmt: str, subtype: str):
    def write(path: Path, samples: np.ndarray, rate: int) -> None:
        if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
            pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {subtype}")
        sf.write(path, samples, rate, format=fmt, subtype=subtype)

    return write


def _av_writer(container: str, codec: str, bit_rate: int | None = None):
    def write(path: Path, samples: np.ndarray, rate: int) -> None:
        av_write(path, samples, rate, container, codec, bit_rate)

    return write


def av_write(path, samples, rate, container, codec, bit_rate=None) -> None:
    """Encode float (n, channels) samples with FFmpeg's `codec` into `container`."""
    layout = "stereo" if samples.ndim == 2 and samples.shape[1] == 2 else "mono"
    columns = samples if samples.ndim == 2 else samples[:, None]
    planar = np.ascontiguousarray(columns.T, dtype=np.float32)
    with av.open(os.fspath(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.rate = rate
        # The encoder's own sample format and frame size.
        fit = av.AudioResampler(
            format=stream.codec_context.format.name,
            layout=layout,
            rate=rate,
            frame_size=stream.codec_context.frame_size or None,
        )
        for piece in [*fit.resample(frame), *fit.resample(None)]:
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))


# (file name, writer, lossless). Every extension in AUDIO_EXTENSIONS appears at least once.
FORMATS = [
    ("pcm16.wav", _sf_writer("WAV", "PCM_16"), True),
    ("float.wav", _sf_writer("WAV", "FLOAT"), True),
    ("pcm_u8.wav", _sf_writer("WAV", "PCM_U8"), True),
    ("sound.flac", _sf_writer("FLAC", "PCM_16"), True),
    ("vorbis.ogg", _sf_writer("OGG", "VORBIS"), False),
    ("vorbis.oga", _sf_writer("OGG", "VORBIS"), False),
    ("libsndfile.opus", _sf_writer("OGG", "OPUS"), False),
    ("ffmpeg.opus", _av_writer("ogg", "libopus"), False),
    ("libsndfile.mp3", _sf_writer("MP3", "MPEG_LAYER_III"), False),
    ("lame.mp3", _av_writer("mp3", "libmp3lame"), False),
    ("aac.m4a", _av_writer("ipod", "aac"), False),
    ("adts.aac", _av_writer("adts", "aac"), False),
    ("pcm24.aif", _sf_writer("AIFF", "PCM_24"), True),
    ("pcm16.aiff", _sf_writer("AIFF", "PCM_16"), True),
    ("wmav2.wma", _av_writer("asf", "wmav2", bit_rate=128_000), False),
]
# The quantisation step of each lossless format: the most a decoded sample may differ.
QUANT = {"pcm16": 2**-15, "float": 1e-7, "pcm_u8": 2**-7, "sound": 2**-15, "pcm24": 2**-23}


def test_every_audio_extension_has_a_decoding_case():
    assert {os.path.splitext(name)[1] for name, _, _ in FORMATS} == set(AUDIO_EXTENSIONS)


@pytest.fixture(scope="module")
def written(tmp_path_factory, stereo) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    paths = {}
    for name, write, _ in FORMATS:
        try:
            write(folder / name, stereo, RATE)
        except pytest.skip.Exception:
            continue
        paths[name] = folder / name
    return paths


def _file(written, name) -> Path:
    if name not in written:
        pytest.skip(f"{name}: this libsndfile cannot write it")
    return written[name]


def aligned(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, correlation) of `decoded` against `reference` after shifting out the codec's delay
    (encoder priming samples), searched within +-max_lag samples."""
    full = correlate(decoded, reference, mode="full", method="fft")
    lags = correlation_lags(len(decoded), len(reference), mode="full")
    near = np.abs(lags) <= max_lag
    lag = int(lags[near][np.argmax(full[near])])
    a, b = (reference, decoded[lag:]) if lag >= 0 else (reference[-lag:], decoded)
    n = min(len(a), len(b))
    return lag, float(np.corrcoef(a[:n], b[:n])[0, 1])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("name,lossless", [(n, lossless) for n, _, lossless in FORMATS])
def test_each_format_decodes_to_the_mono_mix_of_the_recording(
    written, stereo, mono, name, lossless
):
    clip = load_audio(_file(written, name))
    assert clip.rate == RATE and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert not clip.truncated
    length = len(mono) / RATE
    if lossless:
        assert len(clip.samples) == len(mono)
        assert clip.duration == pytest.approx(length, abs=1e-6)
        # The mean of the channels, within the format's quantisation.
        np.testing.assert_allclose(clip.samples, mono, atol=QUANT[name.split(".")[0]])
        return
    # Lossy: codec frames pad the end and priming delays the start by a few ms.
    assert clip.duration == pytest.approx(length, abs=0.1)
    assert abs(clip.seconds - length) < 0.1
    lag, corr = aligned(mono, clip.samples, max_lag=RATE // 10)
    assert corr > 0.9, (name, lag, corr)
    # Mixed, not one channel: either channel alone correlates with the mix at ~0.7 ...
    for channel in (0, 1):
        assert aligned(stereo[:, channel], clip.samples, RATE // 10)[1] < corr
    # ... and at the mix's level: not summed (FFmpeg's own downmix is 3 dB louder).
    assert _rms(clip.samples) / _rms(mono) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("name", [n for n, _, _ in FORMATS])
def test_each_format_resamples_to_the_rate_asked_for(written, mono, name):
    clip = load_audio(_file(written, name), rate=16_000)
    whole = load_audio(_file(written, name))
    assert clip.rate == 16_000
    assert abs(len(clip.samples) - whole.seconds * 16_000) <= 2
    assert clip.duration == pytest.approx(whole.duration, abs=1e-3)
    # Against scipy's polyphase resampling of the original mix (an independent resampler).
    lag, corr = aligned(resample_poly(mono, 1, 3), clip.samples, max_lag=1600)
    assert corr > 0.9, (name, lag, corr)


@pytest.mark.parametrize("name", ["pcm16.wav", "sound.flac", "vorbis.ogg", "libsndfile.mp3"])
def test_the_ffmpeg_path_decodes_what_libsndfile_decodes_identically(written, name):
    """Files libsndfile cannot read go to FFmpeg: the same file read by either gives the same
    samples (same length: the resampler's tail is flushed; same level: the same mixdown)."""
    path = _file(written, name)
    by_libsndfile = load_audio(path)
    samples, rate, duration = audio._decode_av(str(path), str(path), 600.0, first=None)
    assert rate == RATE and duration == pytest.approx(by_libsndfile.duration, abs=0.01)
    assert len(samples) == len(by_libsndfile.samples)
    np.testing.assert_allclose(samples, by_libsndfile.samples, atol=1e-6)


def test_a_real_voice_prompt_decodes_at_its_rate_and_resamples(voice):
    int16, rate = sf.read(voice, dtype="int16")
    clip = load_audio(voice)
    assert (clip.rate, len(clip.samples)) == (8_000, len(int16)) == (rate, len(int16))
    np.testing.assert_array_equal(clip.samples, int16 / np.float32(32768))
    up = load_audio(voice, rate=16_000)
    assert up.rate == 16_000 and abs(len(up.samples) - 2 * len(int16)) <= 2
    assert aligned(resample_poly(clip.samples, 2, 1), up.samples, 800)[1] > 0.99
    assert up.duration == pytest.approx(clip.duration, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Paths, bytes, arrays and clips agree.


@pytest.mark.parametrize("name", [n for n, _, _ in FORMATS])
def test_bytes_and_path_give_the_same_clip(written, name):
    path = _file(written, name)
    for rate in (None, 16_000):
        by_path = load_audio(path, rate=rate)
        for source in (str(path), path.read_bytes(), bytearray(path.read_bytes())):
            other = load_audio(source, rate=rate)
            assert other.rate == by_path.rate
            np.testing.assert_array_equal(other.samples, by_path.samples)
            assert other.duration == pytest.approx(by_path.duration, abs=0.05)


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32", "float64"])
def test_an_array_and_its_rate_give_the_same_clip_as_the_file(written, dtype):
    path = _file(written, "pcm16.wav")
    samples, rate = sf.read(path, dtype=dtype)  # (n, 2), as libsndfile scales it
    for target in (None, 16_000):
        by_path = load_audio(path, rate=target)
        by_array = load_audio((samples, rate), rate=target)
        assert by_array.rate == by_path.rate
        np.testing.assert_allclose(by_array.samples, by_path.samples, atol=1e-7)
        assert by_array.duration == pytest.approx(by_path.duration)
        again = load_audio(by_array, rate=target)  # a Clip passes through unchanged
        np.testing.assert_array_equal(again.samples, by_array.samples)


def test_integer_arrays_scale_as_pcm_files_do():
    as_float = load_audio((np.array([-32768, 0, 16384, 32767], np.int16), 8_000)).samples
    np.testing.assert_array_equal(as_float, [-1.0, 0.0, 0.5, 32767 / 32768])
    unsigned = load_audio((np.array([0, 128, 192, 255], np.uint8), 8_000)).samples
    np.testing.assert_array_equal(unsigned, [-1.0, 0.0, 0.5, 127 / 128])
    # An 8-bit WAV (stored unsigned) and the same values as a uint8 array agree.
    buffer = io.BytesIO()
    sf.write(buffer, np.array([-1.0, 0.0, 0.5, 0.25]), 8_000, format="WAV", subtype="PCM_U8")
    np.testing.assert_array_equal(load_audio(buffer.getvalue()).samples, [-1.0, 0.0, 0.5, 0.25])


def test_a_clip_resampled_from_a_clip_keeps_its_truncation():
    cut = load_audio((np.zeros(8_000 * 3, np.float32), 8_000), max_seconds=2, truncate=True)
    again = load_audio(cut, rate=16_000)
    assert again.truncated and again.rate == 16_000 and len(again.samples) == 32_000
    assert again.duration == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------
# Bad input: always AudioLoadError, naming the source, with the reason.


def _jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, written, voice) -> dict[str, tuple[bytes, str]]:
    """name -> (file contents, a word the reason must contain)."""
    wav = voice.read_bytes()
    mp3 = _file(written, "lame.mp3").read_bytes()
    m4a = _file(written, "aac.m4a").read_bytes()
    flac = _file(written, "sound.flac").read_bytes()
    return {
        "empty.wav": (b"", "empty"),
        "head.wav": (wav[:100], "truncated"),
        "half.wav": (wav[: len(wav) // 2], "truncated"),
        "head.mp3": (mp3[:100], "not a readable sound file"),
        "head.m4a": (m4a[:100], "not a readable sound file"),
        "half.flac": (flac[: len(flac) // 2], "not a readable sound file"),
        "photo.wav": (_jpeg(), "no audio stream"),
        "noise.wav": (np.random.default_rng(7).bytes(20_000), "not a readable sound file"),
        "notes.wav": (b"shopping list: milk, eggs, bread\n" * 40, "not a readable sound file"),
        "riff.wav": (b"RIFF\x10\x00\x00\x00WAVEfmt nothing here", "not a readable sound file"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "empty.wav",
        "head.wav",
        "half.wav",
        "head.mp3",
        "head.m4a",
        "half.flac",
        "photo.wav",
        "noise.wav",
        "notes.wav",
        "riff.wav",
    ],
)
def test_a_bad_file_is_refused_with_the_reason(tmp_path, bad_files, name):
    data, reason = bad_files[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioLoadError) as caught:
        load_audio(path)
    assert caught.value.source == str(path)
    assert reason in caught.value.reason, caught.value.reason
    assert str(path) not in caught.value.reason  # named once, by the error, not again inside
    with pytest.raises(AudioLoadError) as from_bytes:
        load_audio(data)
    assert from_bytes.value.source == "<bytes>"
    assert reason in from_bytes.value.reason, from_bytes.value.reason


def test_a_truncated_wav_says_how_much_is_missing(voice):
    wav = voice.read_bytes()
    with pytest.raises(AudioLoadError, match=r"declares 13840 bytes.*holds 56") as caught:
        load_audio(wav[:100])
    assert "truncated" in caught.value.reason


def test_a_streamed_wav_with_an_unknown_length_is_not_taken_for_a_truncated_one(voice):
    """Recorders writing a stream put 0xFFFFFFFF in the size fields; the sound is all there."""
    wav = bytearray(voice.read_bytes())
    data = wav.find(b"data")
    wav[4:8] = wav[data + 4 : data + 8] = struct.pack("<I", 0xFFFFFFFF)
    clip = load_audio(bytes(wav))
    np.testing.assert_array_equal(clip.samples, load_audio(voice).samples)


def test_random_bytes_of_any_seed_are_refused():
    for seed in range(12):
        with pytest.raises(AudioLoadError):
            load_audio(np.random.default_rng(seed).bytes(4_096))


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(AudioLoadError, match="folder") as caught:
        load_audio(tmp_path)
    assert caught.value.source == str(tmp_path)
    with pytest.raises(AudioLoadError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioLoadError, match="empty data"):
        load_audio(b"")


@pytest.mark.parametrize(
    "samples,rate,reason",
    [
        (np.array([0.1, np.nan, 0.2] * 1000, np.float32), 8_000, "NaN or infinity"),
        (np.array([0.1, np.inf, -0.2] * 1000), 8_000, "NaN or infinity"),
        (np.full((3000, 2), -np.inf), 8_000, "NaN or infinity"),
        (np.zeros(8_000, np.float32), 0, "sample rate 0 Hz"),
        (np.zeros(8_000, np.float32), -16_000, "sample rate -16000 Hz"),
        (np.zeros(8_000, np.float32), 500, "outside 1 kHz..384 kHz"),
        (np.zeros(8_000, np.float32), 10_000_000, "outside 1 kHz..384 kHz"),
        (np.zeros((2, 16_000), np.float32), 16_000, "16000 channels"),  # (channels, n)
        (np.zeros((100, 100), np.float32), 16_000, "100 channels"),
        (np.zeros((10, 2, 2), np.float32), 16_000, "1-D or (n, channels)"),
        (np.float32(0.5), 16_000, "1-D or (n, channels)"),
        (np.array(["a", "b"]), 16_000, "numbers"),
        (np.array([1 + 2j, 3j]), 16_000, "numbers"),
        (np.zeros(0, np.float32), 16_000, "zero length"),
        (np.zeros((0, 2), np.int16), 16_000, "zero length"),
        (np.zeros(100), None, "give (samples, rate)"),
        (np.zeros(100), "fast", "give (samples, rate)"),
        (np.zeros(100), float("nan"), "give (samples, rate)"),
    ],
)
def test_bad_arrays_are_refused_with_the_reason(samples, rate, reason):
    with pytest.raises(AudioLoadError) as caught:
        load_audio((samples, rate))
    assert caught.value.source == "<samples>" or reason == "zero length"
    assert reason in caught.value.reason, caught.value.reason


def test_things_that_are_not_audio_sources():
    for source in (12, None, [0.1, 0.2], (np.zeros(10),), (np.zeros(10), 8_000, "x")):
        with pytest.raises(AudioLoadError):
            load_audio(source)
    for rate in (0, -1, 100, 10_000_000):
        with pytest.raises(InvalidInputError, match="sample rate"):
            load_audio((np.zeros(8_000, np.float32), 8_000), rate=rate)


def test_a_file_of_zero_length_is_refused(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 44_100)
    assert path.stat().st_size > 0  # a header and no sound
    with pytest.raises(AudioLoadError, match="zero length"):
        load_audio(path)
    aiff = tmp_path / "nothing.aiff"
    sf.write(aiff, np.zeros((0, 1), np.float32), 44_100, format="AIFF")
    with pytest.raises(AudioLoadError, match="zero length"):
        load_audio(aiff.read_bytes())
    silent = tmp_path / "nothing.m4a"  # an AAC track with no frames, through FFmpeg
    with av.open(str(silent), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=44_100)
        stream.layout = "mono"
        out.start_encoding()
        out.mux(stream.encode(None))
    assert silent.stat().st_size > 0
    with pytest.raises(AudioLoadError) as caught:
        load_audio(silent)
    assert caught.value.reason in ("no audio stream in the file", "no audio samples (zero length)")


# ---------------------------------------------------------------------------------------------
# The duration limit.


def test_longer_than_the_limit_is_refused_or_cut(voice):
    clip = load_audio(voice)  # 0.865 s
    long = np.tile(clip.samples, 14)  # 12.1 s
    with pytest.raises(AudioLoadError) as caught:
        load_audio((long, 8_000), max_seconds=10)
    assert "12.1 s long" in caught.value.reason and "the limit is 10 s" in caught.value.reason
    cut = load_audio((long, 8_000), max_seconds=10, truncate=True)
    assert cut.truncated and len(cut.samples) == 80_000 and cut.seconds == 10.0
    assert cut.duration == pytest.approx(len(long) / 8_000)
    np.testing.assert_array_equal(cut.samples, long[:80_000])
    resampled = load_audio((long, 8_000), max_seconds=10, truncate=True, rate=16_000)
    assert resampled.truncated and abs(len(resampled.samples) - 160_000) <= 2
    assert not load_audio((long, 8_000), max_seconds=13).truncated


def test_the_limit_comes_from_the_environment(monkeypatch, written):
    path = _file(written, "sound.flac")  # 1.48 s
    monkeypatch.setenv("XMODAL_MAX_AUDIO_SECONDS", "1")
    with pytest.raises(AudioLoadError, match=r"1\.5 s long; the limit is 1 s"):
        load_audio(path)
    assert len(load_audio(path, truncate=True).samples) == RATE
    assert not load_audio(path, max_seconds=2).truncated  # the argument wins
    monkeypatch.setenv("XMODAL_MAX_AUDIO_SECONDS", "0.5")
    assert load_audio(path.read_bytes(), truncate=True).seconds == 0.5


def _silence(path: Path, seconds: int, rate: int) -> None:
    """An hour of silence compresses to a few KB of FLAC; written a minute at a time."""
    minute = np.zeros(rate * 60, np.int16)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16", format="FLAC") as f:
        for _ in range(seconds // 60):
            f.write(minute)


def _peak_bytes(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_hour_long_file_is_not_decoded_whole(tmp_path):
    path = tmp_path / "hour.flac"
    _silence(path, 3600, 8_000)
    assert path.stat().st_size < 1_000_000
    whole = 3600 * 8_000 * 4  # 115 MB as float32
    clip, peak = _peak_bytes(lambda: load_audio(path, max_seconds=10, truncate=True))
    assert len(clip.samples) == 80_000 and clip.rate == 8_000
    assert clip.truncated and clip.duration == pytest.approx(3600.0)
    assert peak < whole / 20, peak  # about the 11 s decoded, not the hour
    with pytest.raises(AudioLoadError, match=r"3600\.0 s long; the limit is 10 s"):
        load_audio(path, max_seconds=10)
    clip, peak = _peak_bytes(lambda: load_audio(path.read_bytes(), max_seconds=10, truncate=True))
    assert len(clip.samples) == 80_000 and peak < whole / 20


def test_a_long_file_through_ffmpeg_is_not_decoded_whole(tmp_path):
    path = tmp_path / "ten_minutes.m4a"
    rate, frame = 8_000, 1024
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        silence = np.zeros((1, frame), np.float32)
        for i in range(600 * rate // frame):
            piece = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
            piece.rate, piece.pts = rate, i * frame
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    whole = 600 * rate * 4  # 19 MB as float32
    clip, peak = _peak_bytes(lambda: load_audio(path, max_seconds=10, truncate=True))
    assert len(clip.samples) == 80_000 and clip.truncated
    assert clip.duration == pytest.approx(600.0, abs=0.5)
    assert peak < whole / 4, peak
    with pytest.raises(AudioLoadError, match=r"(599\.9|600\.0) s long; the limit is 10 s"):
        load_audio(path, max_seconds=10)
