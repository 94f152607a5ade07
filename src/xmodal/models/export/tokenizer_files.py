"""The tokenizer.json of an exported text graph, and the TokenizerSpec that feeds it.

open_clip's own CLIP tokenizer (SimpleTokenizer, pure Python) is rebuilt as an equivalent
`tokenizers` byte-level BPE; a Hugging Face tokenizer (transformers' or open_clip's wrapper of
one) already is a `tokenizers` file underneath and is copied. Either way the file keeps no
truncation or padding of its own: the spec says both, and tokens.TextTokenizer applies them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from xmodal.errors import ModelLoadError
from xmodal.models.exported.tokens import TokenizerSpec

# How open_clip's SimpleTokenizer splits a text into words, after its special tokens (added
# tokens here). It runs on the `regex` package, case-insensitively, whose Unicode tables are
# newer than those of the Oniguruma inside `tokenizers`; so the exported pattern spells out
# each class as the code points `regex` puts in it, and both split every text alike.
_CLIP_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
_CLIP_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# Pooling that reads positions at or before the end-of-text token only.
_PREFIX_POOLS = ("argmax", "first", "eos")


def export_tokenizer(encoder, folder: Path, file: str = "tokenizer.json") -> TokenizerSpec:
    """Write `encoder`'s tokenizer to folder/file; the spec that makes the same feeds from it.

    encoder: an OpenClipEncoder or an HFEncoder. ModelLoadError for a tokenizer that cannot be
    written as a `tokenizers` file with the same output.
    """
    from xmodal.models.hf import HFEncoder
    from xmodal.models.openclip import OpenClipEncoder

    if isinstance(encoder, OpenClipEncoder):
        tokenizer, spec = _openclip(encoder, file)
    elif isinstance(encoder, HFEncoder):
        tokenizer, spec = _hf(encoder, file)
    else:
        raise ModelLoadError(
            f"{getattr(encoder, 'name', encoder)}: no tokenizer export for "
            f"{type(encoder).__name__} (OpenCLIP and Hugging Face CLIP/SigLIP models have one)"
        )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / file))
    return spec


# -- open_clip --------------------------------------------------------------------------------


def _openclip(encoder, file: str):
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    tok = encoder.tokenizer
    if isinstance(tok, HFTokenizer):
        return _openclip_hf(encoder, tok, file)
    if not isinstance(tok, SimpleTokenizer):
        raise ModelLoadError(
            f"{encoder.name}: its tokenizer {type(tok).__name__} cannot be exported (open_clip's "
            "SimpleTokenizer and Hugging Face tokenizers can)"
        )
    if tok.reduction_fn is not None:
        raise ModelLoadError(
            f"{encoder.name}: its tokenizer shortens long texts by masking words "
            "(reduction_mask), which a tokenizer.json cannot do"
        )
    tokenizer = _clip_bpe(tok)
    spec = TokenizerSpec(
        file=file,
        inputs=("input_ids",),
        max_length=_context_length(encoder.name, tok),
        padding="longest" if _shorter_is_same(encoder.model, pad_id=0) else "max_length",
        pad_id=0,  # open_clip fills with zeros, whatever token 0 is
        clean=_clean_name(encoder.name, tok.clean_fn),
    )
    return tokenizer, spec


def _clip_bpe(tok):
    """open_clip's SimpleTokenizer as a `tokenizers` byte-level BPE with the same ids."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    ranks = tok.bpe_ranks
    model = models.BPE(
        vocab=dict(tok.encoder),
        merges=sorted(ranks, key=ranks.__getitem__),
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        fuse_unk=False,
    )
    tokenizer = Tokenizer(model)
    # open_clip cleans the text in Python (the spec's `clean`): nothing to normalise here.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_clip_words(tok)), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Its special tokens are recognised inside texts too, as open_clip's pattern does.
    specials = [tok.decoder[i] for i in tok.all_special_ids]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    sot, eot = tok.decoder[tok.sot_token_id], tok.decoder[tok.eot_token_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}",
        special_tokens=[(sot, tok.sot_token_id), (eot, tok.eot_token_id)],
    )
    return tokenizer


def _clip_words(tok) -> str:
    """open_clip's word pattern with its classes as explicit code point ranges."""
    if not tok.pat.pattern.endswith("|" + _CLIP_WORDS):
        raise ModelLoadError(
            "this open_clip version splits words with a pattern xmodal does not know "
            f"({tok.pat.pattern[-80:]!r}): its tokenizer cannot be exported"
        )
    return _explicit_words(tok.pat.flags)


@lru_cache(maxsize=4)
def _explicit_words(flags: int) -> str:
    import regex

    # Every code point a Rust string can hold (no surrogates), each class tested on all at once.
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)

    def members(expr: str) -> str:
        return _char_class(regex.findall(expr, every, flags))

    contractions = "|".join(
        "'" + "".join(members(regex.escape(ch)) for ch in suffix) for suffix in _CLIP_CONTRACTIONS
    )
    letters, digits = members(r"[\p{L}]"), members(r"[\p{N}]")
    other = members(r"[^\s\p{L}\p{N}]")
    return f"{contractions}|{letters}+|{digits}|{other}+"


def _char_class(chars: list[str]) -> str:
    """An Oniguruma class of exactly `chars`, as ranges of code points."""
    points = sorted({ord(c) for c in chars})
    ranges: list[list[int]] = []
    for p in points:
        if ranges and ranges[-1][1] == p - 1:
            ranges[-1][1] = p
        else:
            ranges.append([p, p])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{body}]"


def _shorter_is_same(model, pad_id: int) -> bool:
    """Whether cutting the padding after the longest text of a batch leaves the vectors as they
    are: open_clip's own text transformer, causal (no position sees a later one) and pooled at
    or before the end-of-text token. The graph must then cut its positional embedding and mask
    to the sequence it gets."""
    from open_clip.model import CLIP

    if type(model) is not CLIP or getattr(model, "attn_mask", None) is None:
        return False
    pool = getattr(model, "text_pool_type", None)
    if pool == "eos":
        # Pools the first eos; pads must not be one.
        return getattr(model, "text_eos_id", None) not in (None, pad_id)
    return pool in _PREFIX_POOLS


def _openclip_hf(encoder, tok, file: str):
    """open_clip's wrapper of a transformers tokenizer: cleaned in Python, padded to the full
    context with the tokenizer's pad token, ids only (the tower makes its mask from them)."""
    if tok.tokenizer_mode:
        raise ModelLoadError(
            f"{encoder.name}: tokenizer mode {tok.tokenizer_mode!r} cannot be exported"
        )
    if tok.strip_sep_token:
        raise ModelLoadError(
            f"{encoder.name}: its tokenizer replaces separator tokens by padding "
            "(strip_sep_token), which a tokenizer.json cannot do"
        )
    tokenizer, pad_id = _hf_backend(encoder.name, tok.tokenizer)
    spec = TokenizerSpec(
        file=file,
        inputs=("input_ids",),
        max_length=_context_length(encoder.name, tok),
        padding="max_length",
        pad_id=pad_id,
        clean=_clean_name(encoder.name, tok.clean_fn),
    )
    return tokenizer, spec


def _context_length(name: str, tok) -> int:
    length = tok.context_length
    if not isinstance(length, int) or length < 2:
        raise ModelLoadError(f"{name}: its tokenizer has no usable context length ({length!r})")
    return length


def _clean_name(name: str, clean_fn) -> str:
    from open_clip import tokenizer as oc

    names = {
        oc._clean_lower: "lower",
        oc._clean_whitespace: "whitespace",
        oc._clean_canonicalize: "canonicalize",
    }
    if clean_fn not in names:
        raise ModelLoadError(f"{name}: its tokenizer cleans texts in a way xmodal cannot export")
    return names[clean_fn]


# -- transformers -----------------------------------------------------------------------------


def _hf(encoder, file: str):
    """As HFEncoder._encode_texts feeds the model: CLIP padded to the longest text with a mask,
    SigLIP padded to the full length, ids only."""
    tokenizer, pad_id = _hf_backend(encoder.name, encoder.tokenizer)
    siglip = encoder.kind == "siglip"
    spec = TokenizerSpec(
        file=file,
        inputs=("input_ids",) if siglip else ("input_ids", "attention_mask"),
        max_length=int(encoder._max_length),
        padding="max_length" if siglip else "longest",
        pad_id=pad_id,
    )
    return tokenizer, spec


def _hf_backend(name: str, hf_tokenizer):
    """A copy of a transformers tokenizer's `tokenizers` object, and its pad id."""
    from tokenizers import Tokenizer

    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ModelLoadError(
            f"{name}: its tokenizer ({type(hf_tokenizer).__name__}) is not a fast `tokenizers` "
            "one, so it cannot be written as tokenizer.json; save the model with a fast "
            "tokenizer (a tokenizer.json beside it) and export again"
        )
    for side in ("padding_side", "truncation_side"):
        if getattr(hf_tokenizer, side, "right") != "right":
            raise ModelLoadError(f"{name}: {side} {getattr(hf_tokenizer, side)!r} is not supported")
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        raise ModelLoadError(f"{name}: its tokenizer has no pad token")
    # A copy: the live tokenizer keeps the padding and truncation transformers set on it.
    return Tokenizer.from_str(backend.to_str()), int(pad_id)
