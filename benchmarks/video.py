"""Speed of indexing videos: seconds of video indexed per wall second, against decoding alone.

    python benchmarks/video.py [--seconds 60] [--size 640x480] [--fps 25] [--threads 2]

Builds a slideshow (tests/media.py) of `--seconds` from the real sample photos, each shown for
3-12 s with a real recording (Tux Paint stamp sounds, Freeciv, Asterisk prompts) as its sound track,
H.264 + AAC. Then, in one run:
  decode      every frame and sound frame decoded by PyAV, nothing else (the baseline)
  segments    xmodal.video.segments: decode + sampling 2 frames/s, cuts, key frames, resampling
  index lite  Collection.index with the lite model (loaded and warmed before the clock starts):
              segments + key frames embedded + each segment's sound heard (SoundNet, Whisper)
Each row: seconds of video per wall second (x real time), segments per second, and its time
as a multiple of the decode baseline's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import slideshow, sound_file
from xmodal.samples import sample_photos
from xmodal.video import segments

SOUNDS = [
    Path("/usr/share/tuxpaint/stamps/seasonal/halloween/blackcat.ogg"),
    Path("/usr/share/games/freeciv/stdsounds/THover.ogg"),
    Path("/usr/share/tuxpaint/stamps/space/apollo_lander.ogg"),
    Path("/usr/share/tuxpaint/stamps/animals/mammals/cats/lion.ogg"),
    Path("/usr/share/asterisk/sounds/en/vm-goodbye.wav"),
    Path("/usr/share/asterisk/sounds/en/queue-thankyou.wav"),
]
SHOT_SECONDS = [4, 8, 5, 12, 6, 3, 7, 5, 4, 6]  # 60 s; the 12 s shot is cut at 10 s


def build(folder: Path, seconds: float, size: tuple[int, int], fps: int) -> Path:
    photos = sample_photos(folder / "photos")
    sounds = [sound_file(p) if p.is_file() else None for p in SOUNDS]
    parts, total, i = [], 0.0, 0
    while total < seconds - 1e-6:
        length = min(SHOT_SECONDS[i % len(SHOT_SECONDS)], seconds - total)
        picture = Image.open(photos[i % len(photos)].path)
        parts.append((picture, sounds[i % len(sounds)], float(length)))
        total, i = total + length, i + 1
    return slideshow(folder / "show.mp4", parts, fps=fps, size=size)


def decode_only(path: Path) -> int:
    """Every video and sound frame decoded, as the segmenter's demux pass does."""
    import av

    frames = 0
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for packet in container.demux(container.streams.video[0], *container.streams.audio):
            frames += len(packet.decode())
    return frames


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="model threads (XMODAL_*)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.threads:
        import os

        os.environ["XMODAL_NUM_THREADS"] = str(args.threads)

    from xmodal.engine.collection import Collection
    from xmodal.models import load_model

    work = Path(tempfile.mkdtemp(prefix="xmodal-video-bench-"))
    try:
        started = time.perf_counter()
        video = build(work, args.seconds, (width, height), args.fps)
        print(
            f"slideshow: {args.seconds:.0f} s, {width}x{height} at {args.fps} fps, "
            f"{video.stat().st_size / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s"
        )
        model = load_model("lite")
        # Warm-up: the model's first calls (and its sound models' loading) are not timed.
        model.embed_images([Image.open(video.parent / "photos" / "chelsea.png")])
        # A spoken prompt: silence would leave the transcriber unloaded (its VAD hears nothing).
        if "audio" in model.modalities:
            speech = [sound_file(p) for p in SOUNDS if p.suffix == ".wav" and p.is_file()]
            model.hear(speech[:1] or [(np.zeros(model.audio_rate, np.float32), model.audio_rate)])
        decode_s, frames = timed(lambda: decode_only(video))
        seg_s, found = timed(lambda: list(segments(video, rate=model.audio_rate)))
        library = work / "library"
        library.mkdir()
        shutil.copy(video, library / "show.mp4")
        with Collection.open(work / "db", model) as collection:
            index_s, report = timed(lambda: collection.index([library]))
        assert report.added == 1 and not report.skipped, report
        rows = [
            ("decode (baseline)", decode_s, None),
            ("segments", seg_s, len(found)),
            ("index lite", index_s, len(found)),
        ]
        print(f"{frames} frames decoded; {len(found)} segments")
        print(f"{'':18} {'x real time':>12} {'segments/s':>11} {'time vs decode':>15}")
        for name, seconds, count in rows:
            per_s = f"{count / seconds:11.2f}" if count else f"{'-':>11}"
            print(f"{name:18} {args.seconds / seconds:12.1f} {per_s} {seconds / decode_s:14.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
