"""How lite hears: a sound lands in the text towers' space by what it sounds like and what is said.

Two parts, each already in lite's space:
- what it sounds like: SoundNet (soundnet.py) was trained to predict, from the sound alone, what
  ImageNet and Places networks saw in the video frames. Its object probabilities are mixed over
  lite's own 1000 class texts (ConSE, as for images) and its scene probabilities over 401 scene
  texts, so a bark lands where "a dog" and a photo of a dog land.
- what is said: Whisper's transcript (speech.py), embedded by the text towers like any query.
The two are mixed by how much of the clip is speech: a voice prompt is found by its words, a
door slam by its sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from xmodal.audio import Clip, resample
from xmodal.models.base import Heard, l2_normalize
from xmodal.models.lite.conse import centre, conse
from xmodal.models.lite.spec import CLASS_ROLE

if TYPE_CHECKING:
    from xmodal.models.lite.conse import LiteEncoder
    from xmodal.models.lite.speech import SpeechReader, Transcript


@dataclass(frozen=True)
class HearingConfig:
    """How the parts are weighed (chosen by benchmarks/audio_search.py)."""

    # SoundNet's probabilities are flat (top 0.01-0.2); T < 1 would sharpen them before mixing
    # (benchmarks/audio_search.py: T 0.25-1 differ within noise; 1 leaves them as they are).
    temperature: float = 1.0
    top_k: int | None = 20
    scene_weight: float = 0.35  # scenes' share of the sound part; objects get the rest
    # The transcript's share of the vector at a speech share of 1 (all speech).
    speech_weight: float = 0.8
    transcribe: bool = True


class LiteHearing:
    """The audio side of a LiteEncoder; SoundNet and Whisper load on first use."""

    def __init__(self, encoder: LiteEncoder, config: HearingConfig | None = None):
        self.encoder = encoder
        self.config = config or HearingConfig()

    @cached_property
    def _soundnet(self):
        from xmodal.models.lite.soundnet import SoundNetRunner

        return SoundNetRunner(num_threads=self.encoder._num_threads, device=self.encoder.device)

    @cached_property
    def speech(self) -> SpeechReader:
        from xmodal.models.lite.speech import SpeechReader

        return SpeechReader(num_threads=self.encoder._num_threads, device=self.encoder.device)

    @cached_property
    def _scene_vectors(self) -> list[np.ndarray]:
        from xmodal.models.lite.soundnet import load_scene_embeddings

        out = []
        for tower in self.encoder.variant.text_towers:
            raw = load_scene_embeddings(tower, CLASS_ROLE[tower])
            out.append(centre(raw, raw.mean(axis=0) if self.encoder.variant.centre else None))
        return out

    def sound_vectors(self, clips: list[Clip]) -> np.ndarray:
        """(n, dim) unit vectors of what the clips sound like (SoundNet through ConSE)."""
        return self.mix_sound(*self._soundnet([c.samples for c in clips]))

    def mix_sound(self, objects: np.ndarray, scenes: np.ndarray) -> np.ndarray:
        """(n, dim) unit vectors from SoundNet's object (n, 1000) and scene (n, 401)
        probabilities: each mixed over its texts (ConSE), scenes weighted by scene_weight."""
        cfg = self.config
        # log p / T through conse's softmax is p ** (1/T), renormalised.
        obj_logits = np.log(np.maximum(objects, 1e-12))
        scene_logits = np.log(np.maximum(scenes, 1e-12))
        parts = []
        for classes, places in zip(self.encoder.class_vectors, self._scene_vectors):
            obj = conse(obj_logits, classes, cfg.temperature, cfg.top_k)
            scene = conse(scene_logits, places, cfg.temperature, cfg.top_k)
            parts.append(l2_normalize((1 - cfg.scene_weight) * obj + cfg.scene_weight * scene))
        return l2_normalize(np.concatenate(parts, axis=1))

    def transcripts(self, clips: list[Clip]) -> list[Transcript]:
        from xmodal.models.lite.speech import WHISPER_RATE

        return [self.speech.transcribe(resample(c.samples, c.rate, WHISPER_RATE)) for c in clips]

    def text_vectors(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit vectors of transcripts (zero rows for empty ones)."""
        out = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        spoken = [i for i, t in enumerate(texts) if t.strip()]
        if spoken:
            out[spoken] = self.encoder.embed_texts([texts[i] for i in spoken])
        return out

    def combine(self, sound: np.ndarray, speech: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """Mix sound and transcript vectors row by row by each clip's speech share."""
        weight = self.config.speech_weight * np.clip(np.asarray(shares, np.float32), 0, 1)
        weight = weight * (np.linalg.norm(speech, axis=1) > 0)  # no words: the sound alone
        return l2_normalize((1 - weight)[:, None] * sound + weight[:, None] * speech)

    def hear(self, clips: list[Clip]) -> list[Heard]:
        sound = self.sound_vectors(clips)
        if not self.config.transcribe:
            return [Heard(v) for v in sound]
        said = self.transcripts(clips)
        speech = self.text_vectors([t.text for t in said])
        shares = np.array([t.speech_share for t in said], dtype=np.float32)
        mixed = self.combine(sound, speech, shares)
        return [
            Heard(v, t.text, t.segments, t.speech_share) for v, t in zip(mixed, said, strict=True)
        ]
