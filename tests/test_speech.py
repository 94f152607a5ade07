"""Whisper tiny.en (lite's speech reader) on real Asterisk voice prompts and real sound effects."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pytest

from xmodal.errors import InvalidInputError, ModelLoadError, ModelNotFoundError
from xmodal.models.lite.speech import (
    WHISPER_RATE,
    SpeechReader,
    default_model,
    word_error_rate,
    word_similarity,
    words,
)

soundfile = pytest.importorskip("soundfile")
soxr = pytest.importorskip("soxr")
pytest.importorskip("faster_whisper")

ASTERISK = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
PROMPTS = ["agent-alreadyon", "vm-sorry", "followme/options", "conf-unmuted", "vm-calldiffnum"]
NOT_SPEECH = [
    "/usr/share/sounds/freedesktop/stereo/bell.oga",
    "/usr/share/sounds/freedesktop/stereo/complete.oga",
    "/usr/share/games/heroes/sfx/alien.wav",
]


def read(path) -> np.ndarray:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, WHISPER_RATE).astype(np.float32)


def shipped_transcripts() -> dict[str, str]:
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as lines:
        pairs = [line.partition(":") for line in lines]
    return {name.strip(): text.strip() for name, sep, text in pairs if sep}


needs_asterisk = pytest.mark.skipif(
    not (ASTERISK.is_dir() and TRANSCRIPTS.is_file()),
    reason="needs Debian asterisk-core-sounds-en-wav and asterisk-core-sounds-en",
)


@pytest.fixture(scope="module")
def reader() -> SpeechReader:
    return SpeechReader(num_threads=2)


@pytest.fixture(scope="module")
def prompt() -> np.ndarray:
    return read(ASTERISK / "agent-alreadyon.wav")  # 5.5 s, two sentences


def test_words_normalise_case_punctuation_and_numbers():
    assert words("Press 1, then #.") == ["press", "one", "then", "pound"]
    assert words("28.8 kilobit") == ["twenty", "eight", "point", "eight", "kilobit"]
    assert words("10th, 21st, P.M. at [@]") == ["tenth", "twenty", "first", "pm", "at"]
    assert words("1,234") == ["one", "thousand", "two", "hundred", "thirty", "four"]
    assert word_error_rate("press one now", "Press 1 now.") == 0
    assert word_error_rate("a b c", "a x c d") == pytest.approx(2 / 3)  # one swap, one extra
    assert word_similarity("a b c d", "a b") == pytest.approx(2 * 2 / 6)


def test_default_model_is_the_packaged_tiny_en():
    folder = Path(default_model())
    assert (folder / "model.bin").is_file() and (folder / "tokenizer.json").is_file()


@pytest.mark.parametrize("model", ["/no/such/whisper", "enormous-v9"])
def test_unknown_model_is_a_typed_error(model):
    with pytest.raises(ModelNotFoundError, match="XMODAL_WHISPER_MODEL"):
        SpeechReader(model)


def test_env_var_chooses_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("XMODAL_WHISPER_MODEL", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"no model\.bin"):
        SpeechReader()


def test_corrupt_model_is_a_load_error_on_first_use(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not a model")
    speech = SpeechReader(str(tmp_path))  # lazy: nothing read yet
    with pytest.raises(ModelLoadError, match="cannot load speech model"):
        speech.transcribe(np.zeros(WHISPER_RATE, np.float32))


def test_size_name_not_cached_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not in the local cache"):
        SpeechReader("base.en").transcribe(np.zeros(WHISPER_RATE, np.float32))


@pytest.mark.parametrize(
    "samples",
    [np.zeros(0, np.float32), np.zeros((2, 800), np.float32), np.full(800, np.nan, np.float32)],
    ids=["empty", "2-d", "nan"],
)
def test_bad_samples_are_refused(reader, samples):
    with pytest.raises(InvalidInputError):
        reader.transcribe(samples)


@needs_asterisk
@pytest.mark.slow
def test_prompts_match_their_shipped_transcripts(reader):
    expected = shipped_transcripts()
    for name in PROMPTS:
        said = reader.transcribe(read(ASTERISK / f"{name}.wav"))
        assert word_similarity(expected[name], said.text) >= 0.9, (name, said.text)
        assert word_error_rate(expected[name], said.text) <= 0.15, (name, said.text)
        assert said.speech_share > 0.7 and said.language == "en"
        assert said.text == said.text.strip()


@pytest.mark.parametrize("path", NOT_SPEECH)
def test_sounds_without_speech_give_no_words(reader, path):
    if not Path(path).is_file():
        pytest.skip(f"{path} not installed (Debian sound-theme-freedesktop / heroes-data)")
    said = reader.transcribe(read(path))
    assert said.text == "" and said.segments == ()
    assert said.speech_share < 0.2


@needs_asterisk
def test_silence_padding_lowers_the_speech_share(reader, prompt):
    alone = reader.transcribe(prompt)
    padded = reader.transcribe(np.concatenate([prompt, np.zeros(5 * WHISPER_RATE, np.float32)]))
    seconds = len(prompt) / WHISPER_RATE
    assert alone.speech_share > 0.8
    expected = alone.speech_share * seconds / (seconds + 5)
    assert padded.speech_share == pytest.approx(expected, abs=0.1)
    assert word_similarity(alone.text, padded.text) >= 0.9


@needs_asterisk
def test_segments_are_ordered_within_the_clip(reader, prompt):
    # Silence before, between and after the two sentences: timestamps must follow the clip.
    gap = np.zeros(2 * WHISPER_RATE, np.float32)
    clip = np.concatenate([gap, prompt, gap, prompt, gap])
    said = reader.transcribe(clip)
    seconds = len(clip) / WHISPER_RATE
    assert len(said.segments) >= 2
    starts = [s for s, _, _ in said.segments]
    assert starts == sorted(starts) and starts[0] >= 1.5  # the leading 2 s are not speech
    for start, end, text in said.segments:
        assert 0 <= start < end <= seconds and text
    assert said.text == " ".join(t for _, _, t in said.segments)
    assert words(said.text).count("already") == 2  # once per prompt


@needs_asterisk
def test_one_reader_serves_several_threads(reader, prompt):
    expected = reader.transcribe(prompt).text
    results = [None] * 3

    def work(i):
        results[i] = reader.transcribe(prompt).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3
