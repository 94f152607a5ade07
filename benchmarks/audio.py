"""Speed of lite's hearing: SoundNet and Whisper on real Asterisk voice prompts, in one run.

    python benchmarks/audio.py [--threads 2] [--prompts 20]   # about 2 minutes on 2 cores
    python benchmarks/audio.py --all                           # + accuracy on every prompt

Clips: `--prompts` voice prompts with a shipped transcript (every n-th, 1-10 s each) and three
30 s clips made by concatenating prompts. For each part: clips/s and seconds of audio per wall
second (the real-time factor, x faster than real time). Whisper runs in four settings, float32
with beam 5 (faster-whisper's defaults) being the baseline: the other rows show their speed
as a ratio to it, and accuracy on the prompts: the mean word error rate and the share of
prompts whose transcript matches (word similarity >= 0.8; words are normalised: case,
punctuation, numbers spelled out). --all then scores the chosen setting on every prompt.
One warm-up clip before each timing loads the model and is not timed.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from xmodal.models.lite.speech import (
    WHISPER_RATE,
    SpeechReader,
    word_error_rate,
    word_similarity,
)

ASTERISK = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SOUNDNET_RATE = 22050
MATCH = 0.8  # word similarity at which a transcript counts as matching
SETTINGS = [("float32", 5), ("float32", 1), ("int8", 5), ("int8", 1)]  # the first: baseline


def prompts() -> list[tuple[Path, str]]:
    """(wav, transcript) of every prompt with spoken words ("[beep tone]", "<beep>" left out)."""
    out = []
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as lines:
        pairs = [line.partition(":") for line in lines]
    for name, sep, text in pairs:
        path = ASTERISK / f"{name.strip()}.wav"
        text = text.strip()
        if sep and text and text[0] not in "[<" and path.is_file():
            out.append((path, text))
    return out


def read(path: Path, rate: int) -> np.ndarray:
    samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), file_rate, rate).astype(np.float32)


def long_clips(clips: list[np.ndarray], rate: int, seconds: float = 30, count: int = 3):
    """`count` clips of `seconds`, each prompts end to end (cycling through them)."""
    out, i = [], 0
    for _ in range(count):
        parts, total = [], 0
        while total < seconds * rate:
            parts.append(clips[i % len(clips)])
            total += len(parts[-1])
            i += 1
        out.append(np.concatenate(parts)[: int(seconds * rate)])
    return out


def timed(fn, clips, rate: int) -> tuple[float, float, list]:
    """(clips/s, audio seconds per wall second, results) of fn over clips, after a warm-up."""
    fn(clips[0])
    t = time.perf_counter()
    results = [fn(c) for c in clips]
    wall = time.perf_counter() - t
    return len(clips) / wall, sum(len(c) for c in clips) / rate / wall, results


def soundnet_part(paths: list[Path], threads: int) -> None:
    try:
        from xmodal.models.lite.soundnet import SoundNetRunner
    except ImportError as e:
        print(f"SoundNet: skipped ({e})")
        return
    runner = SoundNetRunner(num_threads=threads)
    clips = [read(p, SOUNDNET_RATE) for p in paths]
    print("SoundNet (objects + scenes), one clip a call:")
    for label, items in (("prompts", clips), ("30 s clips", long_clips(clips, SOUNDNET_RATE))):
        per_s, rtf, _ = timed(lambda c: runner([c]), items, SOUNDNET_RATE)
        print(f"  {label:<11} {per_s:7.2f} clips/s  {rtf:7.1f} s audio/s")


def score(texts: list[str], said) -> tuple[float, float]:
    """(mean WER, share matching) of transcripts against the shipped texts."""
    wer = [word_error_rate(t, s.text) for t, s in zip(texts, said, strict=True)]
    sim = [word_similarity(t, s.text) for t, s in zip(texts, said, strict=True)]
    return float(np.mean(wer)), float(np.mean(np.array(sim) >= MATCH))


def whisper_part(chosen: list[tuple[Path, str]], threads: int) -> None:
    clips = [read(p, WHISPER_RATE) for p, _ in chosen]
    texts = [t for _, t in chosen]
    longs = long_clips(clips, WHISPER_RATE)
    print(f"Whisper tiny.en, {len(clips)} prompts ({sum(map(len, clips)) / WHISPER_RATE:.0f} s):")
    print(f"  {'setting':<21} {'prompts/s':>9} {'s audio/s':>9} {'x base':>6} {'WER':>6} "
          f"{'match':>6} | {'30 s clips: s audio/s':>21} {'x base':>6}")  # fmt: skip
    for i, (compute_type, beam) in enumerate(SETTINGS):
        reader = SpeechReader(num_threads=threads, compute_type=compute_type, beam_size=beam)
        per_s, rtf, said = timed(reader.transcribe, clips, WHISPER_RATE)
        _, long_rtf, _ = timed(reader.transcribe, longs, WHISPER_RATE)
        if i == 0:
            base = rtf, long_rtf
        wer, match = score(texts, said)
        name = f"{compute_type} beam {beam}" + (" (base)" if i == 0 else "")
        print(f"  {name:<21} {per_s:9.2f} {rtf:9.1f} {rtf / base[0]:6.2f} {wer:6.3f} "
              f"{match:6.2f} | {long_rtf:21.1f} {long_rtf / base[1]:6.2f}")  # fmt: skip


def all_prompts(items: list[tuple[Path, str]], threads: int) -> None:
    reader = SpeechReader(num_threads=threads)
    clips = [read(p, WHISPER_RATE) for p, _ in items]
    t = time.perf_counter()
    said = [reader.transcribe(c) for c in clips]
    wall = time.perf_counter() - t
    wer, match = score([t for _, t in items], said)
    audio = sum(map(len, clips)) / WHISPER_RATE
    setting = f"{reader.compute_type} beam {reader.beam_size}"
    print(f"Every prompt ({len(items)}, {audio:.0f} s of speech), {setting}: match (similarity "
          f">= {MATCH}) {match:.3f}, mean WER {wer:.3f}, {1000 * wall / len(items):.0f} ms per "
          f"prompt ({audio / wall:.1f} s audio/s)")  # fmt: skip
    worst = sorted(zip(items, said), key=lambda x: word_similarity(x[0][1], x[1].text))[:8]
    for (path, text), s in worst:
        print(f"    {path.relative_to(ASTERISK)}: {text!r} -> {s.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--all", action="store_true", help="also score every prompt")
    args = parser.parse_args()
    if not TRANSCRIPTS.is_file():
        raise SystemExit("needs the Debian packages asterisk-core-sounds-en-wav and -en")
    items = prompts()
    chosen = items[:: max(1, len(items) // args.prompts)][: args.prompts]
    soundnet_part([p for p, _ in chosen], args.threads)
    whisper_part(chosen, args.threads)
    if args.all:
        all_prompts(items, args.threads)


if __name__ == "__main__":
    main()
