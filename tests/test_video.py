"""Videos as segments: probing, cutting at scene changes, their sound, bad files, and a
slideshow built from real photos and real recordings found by "a rocket" at the right seconds."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image

from media import slideshow, song, sound_file
from xmodal.audio import resample
from xmodal.cli import main
from xmodal.engine.collection import Collection
from xmodal.errors import AudioLoadError, VideoLoadError
from xmodal.video import probe, segments

MEOW = Path("/usr/share/tuxpaint/stamps/seasonal/halloween/blackcat.ogg")  # a black cat mewing
# An engine roaring (Freeciv's helicopter); lite hears it closest to "a rocket" of a few labels.
ENGINE = Path("/usr/share/games/freeciv/stdsounds/THover.ogg")

pytestmark = pytest.mark.skipif(
    not (MEOW.is_file() and ENGINE.is_file()),
    reason="needs the Debian packages tuxpaint-stamps-default and freeciv-data (.ci/run)",
)

STEP = 0.5  # segments() samples 2 frames a second: a cut is placed within this of its moment


def cat() -> Image.Image:
    return Image.fromarray(skimage.data.chelsea())


def rocket() -> Image.Image:
    return Image.fromarray(skimage.data.rocket())


@pytest.fixture(scope="module")
def show(tmp_path_factory) -> Path:
    """8 s: the cat with its meow for 4 s, then the rocket with its engine for 4 s."""
    folder = tmp_path_factory.mktemp("show")
    return slideshow(
        folder / "show.mp4",
        [(cat(), sound_file(MEOW), 4.0), (rocket(), sound_file(ENGINE), 4.0)],
    )


def _envelope(samples: np.ndarray, rate: int, window: float = 0.05) -> np.ndarray:
    n = int(rate * window)
    usable = len(samples) // n * n
    return np.sqrt((samples[:usable].reshape(-1, n) ** 2).mean(axis=1))


# -- probe ----------------------------------------------------------------------------------


def test_probe_reports_the_slideshow(show):
    info = probe(show)
    assert info.duration == pytest.approx(8.0, abs=0.1)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(10.0)
    assert info.has_audio and info.rotation == 0


def test_probe_turns_a_rotated_video_and_knows_a_silent_one(tmp_path):
    path = slideshow(tmp_path / "phone.mp4", [(cat(), None, 1.0)], rotation=90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    assert not info.has_audio
    (segment,) = segments(path)
    assert segment.frame.size == (240, 320) and segment.audio is None
    # Turned counterclockwise: the picture's top row is now its left column.
    upright = np.asarray(cat().convert("RGB").resize((320, 240)), np.float32)
    turned = np.asarray(segment.frame, np.float32)
    assert np.abs(turned - np.rot90(upright)).mean() < 12
    assert np.abs(turned - np.rot90(upright, -1)).mean() > 30


def test_limits_refuse_big_frames_and_long_videos(show, monkeypatch):
    monkeypatch.setenv("XMODAL_MAX_VIDEO_PIXELS", str(320 * 240 - 1))
    with pytest.raises(VideoLoadError, match="XMODAL_MAX_VIDEO_PIXELS"):
        probe(show)
    with pytest.raises(VideoLoadError, match="over the limit"):
        list(segments(show))
    monkeypatch.delenv("XMODAL_MAX_VIDEO_PIXELS")
    monkeypatch.setenv("XMODAL_MAX_VIDEO_SECONDS", "5")
    with pytest.raises(VideoLoadError, match="XMODAL_MAX_VIDEO_SECONDS"):
        probe(show)
    # Streaming stops at the limit even where the container's duration is not trusted.
    assert max(s.end for s in segments(show)) <= 5.2


# -- segments -------------------------------------------------------------------------------


def test_segments_cut_at_the_scene_change_with_their_own_sound(show):
    found = list(segments(show, rate=16_000))
    assert len(found) == 2, [(s.start, s.end) for s in found]
    first, second = found
    assert first.start == 0.0 and second.end == pytest.approx(8.0, abs=0.11)
    assert abs(first.end - 4.0) <= STEP and second.start == first.end
    # Key frames: the cat's picture, then the rocket's.
    pictures = [np.asarray(p.resize((320, 240)), np.float32) for p in (cat(), rocket())]
    for segment, (own, other) in zip(found, (pictures, pictures[::-1])):
        got = np.asarray(segment.frame, np.float32)
        assert segment.frame.mode == "RGB" and segment.frame.size == (320, 240)
        assert np.abs(got - own).mean() < 8 < np.abs(got - other).mean()
    # Each segment carries its seconds of sound, at the rate asked for.
    for segment in found:
        assert segment.rate == 16_000 and segment.audio.dtype == np.float32
        assert len(segment.audio) / 16_000 == pytest.approx(segment.end - segment.start, abs=0.05)
    # ... and it is that part's recording (loudness over time follows the source's).
    for segment, source in ((first, MEOW), (second, ENGINE)):
        samples, rate = sound_file(source)
        wanted = np.resize(resample(samples, rate, 16_000), len(segment.audio))
        got, want = _envelope(segment.audio, 16_000), _envelope(wanted, 16_000)
        assert np.corrcoef(got, want)[0, 1] > 0.9


def test_long_shots_are_cut_every_n_seconds(show):
    spans = [(s.start, s.end) for s in segments(show, every=1.5)]
    assert all(end - start <= 1.5 + STEP for start, end in spans), spans
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(8.0, abs=0.11)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gaps, no overlaps
    assert any(abs(start - 4.0) <= STEP for start, _ in spans)  # the cut is still a boundary


def test_a_silent_video_gives_segments_without_sound(tmp_path):
    path = slideshow(tmp_path / "silent.mp4", [(cat(), None, 2.0), (rocket(), None, 2.0)])
    found = list(segments(path))
    assert len(found) == 2 and all(s.audio is None for s in found)


def test_the_sound_track_is_left_undecoded_when_not_wanted(show):
    found = list(segments(show, sound=False))
    assert [round(s.start) for s in found] == [0, 4] and all(s.audio is None for s in found)


def test_a_model_that_does_not_hear_indexes_a_video_by_its_pictures(tmp_path, show):
    from checkpoints import save_hf_clip  # a tiny random CLIP the tests build and save

    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(show, folder / "show.mp4")
    with Collection.open(tmp_path / "db", f"hf:{save_hf_clip(tmp_path / 'clip')}") as collection:
        assert "audio" not in collection.encoder.modalities
        report = collection.index([folder])
        assert (report.added, report.skipped) == (1, [])
        spans = sorted(_video_hits(collection.search("a rocket", k=5, mode="vector")))
        assert len(spans) == 2 and abs(spans[1][0] - 4.0) <= STEP


def test_a_video_cut_short_after_its_index_keeps_the_segments_before_the_cut(tmp_path, show):
    # MP4 with its index first ("faststart"): a cut-off copy still opens and plays up to the cut.
    whole = tmp_path / "whole.mp4"
    faststart = {"movflags": "faststart"}
    with av.open(str(show)) as src, av.open(str(whole), "w", options=faststart) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert probe(cut).duration == pytest.approx(8.0, abs=0.1)  # the header still says 8 s
    found = list(segments(cut))
    assert found and found[0].start == 0.0 and found[-1].end < 8.0


# -- bad files ------------------------------------------------------------------------------


def bad_videos(folder: Path, show: Path) -> dict[str, str]:
    """Files named like videos that are not (readable) ones -> a word their reason contains."""
    folder.mkdir(parents=True, exist_ok=True)
    data = show.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    cat().save(folder / "photo.mp4", format="JPEG")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mkv").write_bytes(b"shopping list: milk, eggs\n" * 40)
    song(folder / "sound.mp4", sound_file(ENGINE))
    song(folder / "song.m4v", sound_file(MEOW), cover=cat())  # its cover art is no video
    return {
        "truncated.mp4": "moov atom not found",
        "photo.mp4": "an image, not a video",
        "empty.mp4": "empty",
        "notes.mkv": "not a readable video",
        "sound.mp4": "no video stream",
        "song.m4v": "no video stream",
    }


def test_bad_files_raise_typed_errors(tmp_path, show):
    reasons = bad_videos(tmp_path / "bad", show)
    for name, reason in reasons.items():
        with pytest.raises(VideoLoadError, match=reason) as probed:
            probe(tmp_path / "bad" / name)
        assert probed.value.source.endswith(name)
        assert isinstance(probed.value, AudioLoadError)  # caught wherever media files are read
        with pytest.raises(VideoLoadError, match=reason):
            next(segments(tmp_path / "bad" / name))
    with pytest.raises(VideoLoadError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_an_index_run_skips_bad_videos_with_their_reason(tmp_path, show, lite):
    folder = tmp_path / "library"
    reasons = bad_videos(folder, show)
    shutil.copy(show, folder / "good.mp4")
    with Collection.open(tmp_path / "db", lite) as collection:
        report = collection.index([folder])
        assert report.added == 1
        skipped = {Path(path).name: reason for path, reason in report.skipped}
        assert set(skipped) == set(reasons)
        for name, reason in reasons.items():
            assert reason in skipped[name], (name, skipped[name])
        again = collection.index([folder])  # not retried while unchanged
        assert (again.added, again.embedded, len(again.skipped)) == (0, 0, len(reasons))


def test_a_video_gone_before_its_frames_are_decoded_is_skipped(tmp_path, show, photos, lite):
    """Probed by the read, deleted before the segments are decoded: a skip, not a failed run."""
    from xmodal.engine.indexer import read_file

    folder = tmp_path / "library"
    folder.mkdir()
    video = Path(shutil.copy(show, folder / "show.mp4"))
    shutil.copy(photos[0].path, folder / "photo.png")

    def reader(files, known):  # reads the images; runs after the video was read (probed)
        video.unlink()
        for f in files:
            yield read_file(f, known, lambda: lite)

    with Collection.open(tmp_path / "db", lite) as collection:
        report = collection.index([folder], reader=reader)
        assert report.added == 1
        assert [(Path(p).name, r) for p, r in report.skipped] == [("show.mp4", "no such file")]
        assert collection.search("a rocket", k=5, where={"type": "video"}) == []


# -- the must-show: a video in a collection -------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory, show, photos):
    """The slideshow beside a few real photos (not the cat's or the rocket's own)."""
    folder = tmp_path_factory.mktemp("library")
    shutil.copy(show, folder / "show.mp4")
    for photo in photos:
        if photo.name in ("coffee", "horse", "camera", "moon"):
            shutil.copy(photo.path, folder / f"{photo.name}.png")
    return folder


def _video_hits(hits, name="show.mp4"):
    return [(h.start, h.end) for h in hits if Path(h.path).name == name]


def test_a_rocket_finds_the_seconds_of_the_rocket(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, "lite") as collection:
        report = collection.index([library])
        assert (report.added, report.skipped) == (5, [])
        for mode in ("vector", "hybrid"):
            rocket_spans = _video_hits(collection.search("a rocket", k=10, mode=mode))
            (start, end), other = rocket_spans[0], rocket_spans[1]
            assert abs(start - 4.0) <= STEP and end == pytest.approx(8.0, abs=0.11), mode
            assert other[0] == 0.0, mode  # the cat's segment ranks below
            cat_spans = _video_hits(collection.search("a cat", k=10, mode=mode))
            assert cat_spans[0][0] == 0.0 and abs(cat_spans[0][1] - 4.0) <= STEP, mode
        # Filtered to videos: only the two segments, each naming the video file.
        only = collection.search("a rocket", k=10, mode="vector", where={"type": "video"})
        assert [Path(h.path).name for h in only] == ["show.mp4", "show.mp4"]
    # The CLI prints the time range beside the path.
    runner = CliRunner()
    printed = runner.invoke(main, ["search", "a rocket", "--db", str(db), "-k", "3"])
    assert printed.exit_code == 0, printed.output
    first = printed.stdout.splitlines()[0]
    assert "show.mp4" in first and "[0:04.0-0:08.0]" in first, printed.stdout
    as_json = runner.invoke(main, ["search", "a rocket", "--db", str(db), "-k", "1", "--json"])
    hit = json.loads(as_json.stdout)["results"][0]
    assert Path(hit["path"]).name == "show.mp4" and hit["start"] == pytest.approx(4.0, abs=STEP)


def test_a_video_is_indexed_incrementally(tmp_path, library, lite):
    folder = tmp_path / "library"
    shutil.copytree(library, folder)
    video = folder / "show.mp4"
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([folder])
        first = {(h.id, h.start) for h in collection.search("a rocket", k=10, mode="vector")}
        # Unchanged: nothing read, nothing embedded.
        again = collection.index([folder])
        assert (again.added, again.updated, again.embedded, again.unchanged) == (0, 0, 0, 5)
        # Touched (same bytes, new time): recognised by its hash, its segments kept.
        st = video.stat()
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        touched = collection.index([folder])
        assert (touched.updated, touched.embedded, touched.unchanged) == (0, 0, 5)
        assert {(h.id, h.start) for h in collection.search("a rocket", k=10, mode="vector")} == (
            first
        )
        # Replaced by a new cut (the rocket first, for 3 s): re-embedded, the old segments gone.
        slideshow(video, [(rocket(), sound_file(ENGINE), 3.0), (cat(), sound_file(MEOW), 3.0)])
        replaced = collection.index([folder])
        assert (replaced.updated, replaced.embedded) == (1, 1)
        hits = collection.search("a rocket", k=10, mode="vector")
        spans = _video_hits(hits)
        assert len(spans) == 2 and spans[0][0] == 0.0 and abs(spans[0][1] - 3.0) <= STEP
        assert not {h.id for h in hits if Path(h.path).name == "show.mp4"} & {i for i, _ in first}
        # Deleted: its segments leave with it.
        video.unlink()
        gone = collection.index([folder])
        assert gone.removed == 1
        assert _video_hits(collection.search("a rocket", k=10, mode="vector")) == []
        assert _video_hits(collection.search("a cat", k=10, mode="vector")) == []
