"""Hugging Face transformers CLAP checkpoints (ClapModel): text and sound in one space, no images.

Loaded by hf.py like CLIP and SigLIP (hf:DIR or hf:laion/clap-htsat-unfused): a folder written by
`model.save_pretrained(DIR)`, `tokenizer.save_pretrained(DIR)` and the ClapFeatureExtractor's
`save_pretrained(DIR)`. Texts go through the RoBERTa tower (`get_text_features`); sound goes
through the feature extractor's log-mel spectrogram at its own rate (48 kHz for LAION's CLAP) and
the HTS-AT tower (`get_audio_features`).

The feature extractor alone is not deterministic: a clip longer than its window (`max_length_s`,
10 s for LAION's CLAP) is cropped at random ("rand_trunc") or fused from random crops ("fusion"),
and a fusion model gets one clip of each batch marked "longer" at random. Here a long clip is
cut into equal windows that each fit, every window is embedded as a whole clip (never marked
longer), and the clip's vector is the mean of its windows': the same clip always gives the same
vector, whatever batch it came in, and every second of it counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from xmodal.audio import Clip
from xmodal.errors import InvalidInputError, ModelLoadError
from xmodal.models.base import AUDIO, TEXT, Encoder
from xmodal.models.device import autocast

MODEL_TYPE = "clap"
SAVE_HINT = (
    "save the model with model.save_pretrained(DIR), tokenizer.save_pretrained(DIR) and "
    "feature_extractor.save_pretrained(DIR) (a ClapFeatureExtractor), then use hf:DIR"
)
# Windows run through the audio tower together; a 10 min clip is 60 windows of 10 s.
_WINDOW_BATCH = 8


class ClapEncoder(Encoder):
    """Texts and sounds of a transformers ClapModel; `embed_images` says there is no image
    tower."""

    modalities = frozenset({TEXT, AUDIO})

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer,
        feature_extractor,
        device: torch.device,
        batch_size: int | None,
    ):
        from transformers import ClapFeatureExtractor

        if not isinstance(feature_extractor, ClapFeatureExtractor):
            raise ModelLoadError(
                f"{name}: its preprocessor_config.json gives a "
                f"{type(feature_extractor).__name__}, not the ClapFeatureExtractor a CLAP model "
                f"was trained with: {SAVE_HINT}"
            )
        config = model.config
        _check_features(name, feature_extractor, config.audio_config)
        self.name = name
        self.kind = MODEL_TYPE
        self.dim = int(config.projection_dim)
        if batch_size is not None:
            self.batch_size = batch_size
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.features = feature_extractor
        self.audio_rate = int(feature_extractor.sampling_rate)
        # Zero-shot labels a sound with logits_per_audio, which CLAP scales by its audio
        # temperature (logit_scale_t scales text -> audio retrieval in training).
        self.logit_scale = float(model.logit_scale_a.detach().exp())
        self.logit_bias = None
        self._window = int(feature_extractor.nb_max_samples)
        text_config = config.text_config
        # RoBERTa's positions start after the padding index: 514 positions hold 512 tokens.
        pad = text_config.pad_token_id
        positions = int(text_config.max_position_embeddings) - (0 if pad is None else pad + 1)
        limit = getattr(tokenizer, "model_max_length", None) or positions
        self._max_length = min(int(limit), positions)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        inputs = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        inputs = {k: inputs[k].to(self.device) for k in ("input_ids", "attention_mask")}
        with torch.inference_mode(), autocast(self.device):
            return _pooled(self.model.get_text_features(**inputs))

    def _encode_audio(self, clips: list[Clip]) -> np.ndarray:
        windows: list[np.ndarray] = []
        owners: list[int] = []
        for i, clip in enumerate(clips):
            if clip.rate != self.audio_rate:  # load_audio resamples; a Clip made by hand may not
                raise InvalidInputError(
                    f"{self.name} takes clips at {self.audio_rate} Hz, got one at {clip.rate} Hz"
                )
            pieces = self.windows(clip.samples)
            windows += pieces
            owners += [i] * len(pieces)
        vectors = np.concatenate(
            [
                self.embed_windows(windows[start : start + _WINDOW_BATCH])
                for start in range(0, len(windows), _WINDOW_BATCH)
            ]
        )
        owner = np.asarray(owners)
        return np.stack([vectors[owner == i].mean(axis=0) for i in range(len(clips))])

    def windows(self, samples: np.ndarray) -> list[np.ndarray]:
        """The clip cut into the fewest equal windows that fit the feature extractor's window
        (a clip that fits is one window): equal, so that a short last one is not repeated to
        fill a whole window and weigh as much as the rest."""
        count = max(1, math.ceil(len(samples) / self._window))
        return np.array_split(np.asarray(samples, dtype=np.float32), count)

    def embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """The model's vectors of windows that each fit the extractor's window:
        [len(windows), dim]."""
        # The extractor draws from numpy's global generator (for its random crops and its
        # random "longer" mark); the caller's sequence of random numbers stays as it was.
        state = np.random.get_state()
        try:
            inputs = self.features(windows, sampling_rate=self.audio_rate, return_tensors="pt")
        finally:
            np.random.set_state(state)
        # Each window is a whole clip to the model: not "longer", whatever the extractor drew.
        longer = torch.zeros((len(windows), 1), dtype=torch.bool)
        features = inputs["input_features"].to(self.device, torch.float32)
        with torch.inference_mode(), autocast(self.device):
            output = self.model.get_audio_features(
                input_features=features, is_longer=longer.to(self.device)
            )
        return _pooled(output)


def check_quantize(name: str, quantize: str | None) -> None:
    """int8's parity check embeds probe texts and images; a CLAP model's audio tower would go
    to int8 unmeasured, so it is not offered."""
    if quantize is not None:
        raise InvalidInputError(
            f"{name}: quantize={quantize!r} is not offered for CLAP models (the int8 parity "
            "check has no sound probes); load it without quantize"
        )


def _check_features(name: str, features, audio_config) -> None:
    """The spectrogram the extractor makes must be the one the audio tower takes: a fusion
    model takes 4 stacked spectrograms ("fusion"), the others one ("rand_trunc"), each with as
    many mel bands as the tower has; a mismatch would otherwise fail at the first sound."""
    fused = bool(audio_config.enable_fusion)
    if (features.truncation == "fusion") != fused:
        raise ModelLoadError(
            f"{name}: its feature extractor has truncation={features.truncation!r} but the "
            f"model was built {'with' if fused else 'without'} feature fusion (use "
            f"{'fusion' if fused else 'rand_trunc'}): the preprocessor_config.json belongs to "
            f"another checkpoint; {SAVE_HINT}"
        )
    if int(features.feature_size) != int(audio_config.num_mel_bins):
        raise ModelLoadError(
            f"{name}: its feature extractor makes {features.feature_size} mel bands, the audio "
            f"tower takes {audio_config.num_mel_bins}; {SAVE_HINT}"
        )


def _pooled(output) -> np.ndarray:
    # transformers 5 returns a model output whose pooler_output holds the projected features;
    # earlier versions return the tensor itself.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.float().cpu().numpy()
