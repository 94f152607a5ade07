"""Tiny randomly initialised checkpoints, saved on disk the way users save theirs.

No downloads: the open_clip architecture is registered from a JSON written here, the CLIP tokenizer
is rebuilt from the BPE file open_clip ships, and the SigLIP tokenizer is trained on the spot with
the `tokenizers` library from open_clip's bundled ImageNet class names. Reused by the backend tests
and by later ONNX export and fine-tuning tests.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

# Distinctive learned temperatures, so a test can tell "read from the checkpoint" from a default.
LOGIT_SCALE = 42.0
LOGIT_BIAS = -7.5

TINY_OPENCLIP_ARCH = "xmodal-tiny-ViT"
CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT = 77


def tiny_openclip_config(image_size: int = 64, embed_dim: int = 32) -> dict:
    """An open_clip ViT config small enough to build in well under a second."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {
            "context_length": CLIP_CONTEXT,
            "vocab_size": CLIP_VOCAB_SIZE,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }


def register_tiny_openclip_arch(folder: Path, arch: str = TINY_OPENCLIP_ARCH, **config) -> str:
    """Write the config as ARCH.json and register it, so open_clip.create_model(arch) works."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}.json"
    path.write_text(json.dumps(tiny_openclip_config(**config)))
    open_clip.add_model_config(path)
    return arch


def tiny_openclip_model(folder: Path, arch: str = TINY_OPENCLIP_ARCH, seed: int = 0):
    """(arch, random eval-mode model) with LOGIT_SCALE as its learned temperature."""
    import open_clip
    import torch

    register_tiny_openclip_arch(folder, arch)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch).eval()
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(LOGIT_SCALE)))
    return arch, model


def save_openclip_checkpoint(
    folder: Path, fmt: str = "safetensors", arch: str = TINY_OPENCLIP_ARCH, seed: int = 0
) -> tuple[str, Path]:
    """Save a tiny random open_clip model; returns (arch, checkpoint path).

    fmt: "safetensors" (safetensors.torch.save_file), "pt" (torch.save(model.state_dict())) or
    "training" (open_clip's training-loop format: {"epoch", "state_dict"} with DDP's "module.").
    """
    import torch

    folder = Path(folder)
    arch, model = tiny_openclip_model(folder, arch, seed)
    state = model.state_dict()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = folder / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pt":
        path = folder / f"{arch}.pt"
        torch.save(state, path)
    elif fmt == "training":
        path = folder / f"{arch}-epoch_1.pt"
        torch.save(
            {"epoch": 1, "name": arch, "state_dict": {f"module.{k}": v for k, v in state.items()}},
            path,
        )
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}")
    return arch, path


# -- transformers -----------------------------------------------------------------------------


def write_clip_bpe_vocab(folder: Path) -> None:
    """vocab.json + merges.txt of the real CLIP tokenizer, from open_clip's bundled BPE file.

    The vocabulary is what open_clip's SimpleTokenizer builds: the 256 byte characters, the same
    with "</w>", one entry per merge, then the two special tokens (49408 in all).
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the slice SimpleTokenizer takes
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(folder)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def save_hf_clip(folder: Path, image_size: int = 64, seed: int = 0) -> Path:
    """A tiny random CLIPModel with the real CLIP tokenizer and an image processor, in `folder`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # transformers 5 ignores CLIPTokenizer(vocab_file=..., merges_file=...) and builds a 2-token
    # vocabulary; loading the folder reads the files properly.
    write_clip_bpe_vocab(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    if len(tokenizer) != CLIP_VOCAB_SIZE or len(tokenizer("a photo of a cat")["input_ids"]) != 7:
        raise RuntimeError(f"CLIP tokenizer came out wrong: {len(tokenizer)} tokens")
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(folder)

    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": 2,
            "vocab_size": CLIP_VOCAB_SIZE,
            "max_position_embeddings": CLIP_CONTEXT,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **tower,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(LOGIT_SCALE)))
    model.save_pretrained(folder)
    return folder


def _siglip_corpus() -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, SIMPLE_IMAGENET_TEMPLATES

    return [
        template(name) for name in IMAGENET_CLASSNAMES for template in SIMPLE_IMAGENET_TEMPLATES
    ]


def save_hf_siglip(
    folder: Path, image_size: int = 64, seed: int = 0, vocab_size: int = 1000
) -> Path:
    """A tiny random SiglipModel with a trained unigram tokenizer and an image processor.

    Real SigLIP checkpoints ship a sentencepiece model, which needs the `sentencepiece` package;
    this tokenizer follows the same conventions (lower case, "▁" word marks, "</s>" appended and
    used for padding) through `tokenizers` alone, as SigLIP 2's Gemma tokenizer does.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer
    from transformers import (
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(
        _siglip_corpus(),
        UnigramTrainer(
            vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
        ),
    )
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", eos)]
    )
    max_length = 16
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)

    tower = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    config = SiglipConfig(
        text_config={
            **tower,
            "vocab_size": backend.get_vocab_size(),
            "max_position_embeddings": max_length,
            "bos_token_id": None,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={**tower, "image_size": image_size, "patch_size": 16},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(LOGIT_SCALE)))
        model.logit_bias.fill_(LOGIT_BIAS)
    model.save_pretrained(folder)
    return folder


# -- the Hugging Face cache -------------------------------------------------------------------


def add_to_hf_cache(cache_dir: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """Lay `files` out as huggingface_hub caches a download of `repo_id` (refs/main -> snapshot,
    snapshot files linked to content-addressed blobs), so code can load it "from the hub" offline.
    Returns the snapshot folder."""
    import hashlib

    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.unlink(missing_ok=True)
        link.symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot
