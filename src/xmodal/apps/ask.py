"""Answers from a collection (retrieval-augmented generation): find the items that bear on a
question, number them as sources, and let a language model answer from them alone.

Retrieval widens the collection's hybrid search (and, with a query image, its nearest items),
then ranks each candidate by the query's similarity to the item's image and to the item's text
together: a caption that holds the answer lifts an item whose picture alone would not.
The system lists the sources it gave the model; they are not left to the model to recall.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from xmodal.errors import InvalidInputError

WIDEN = 8  # candidates per source asked for, before re-ranking
MAX_CONTEXT_CHARS = 4000  # ~1000 tokens: SmolLM2 has a 2k-token window, the answer needs room
MAX_SOURCE_CHARS = 600
SYSTEM = (
    "You answer questions using only the numbered sources given. Cite the sources you use "
    "as [n]. If the sources do not contain the answer, say you do not know. Be brief."
)


@dataclass(frozen=True)
class Source:
    n: int
    id: int | None  # None: the query image itself (ask --image), not an item of the collection
    path: str
    caption: str
    ocr: str
    score: float


@dataclass(frozen=True)
class Answer:
    text: str
    sources: list[Source] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def retrieve(
    collection,
    question: str,
    *,
    k: int = 5,
    image=None,
    image_weight: float = 0.5,
    text_weight: float = 0.5,
    where=None,
    include_flagged: bool = False,
) -> list[Source]:
    """The k items that best bear on `question` (and `image`, a path or PIL image), best first."""
    question = _checked(question)
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    if image_weight < 0 or text_weight < 0 or image_weight + text_weight == 0:
        raise InvalidInputError("image and text weights must be >= 0, not both 0")
    if collection.count() == 0:
        return []
    encoder = collection.encoder
    query = encoder.embed_texts([question])[0]
    hits = collection.search(
        question, k * WIDEN, where=where, include_flagged=include_flagged, vector=query
    )
    ids = [h.id for h in hits]
    if image is not None:
        image_vector = encoder.embed_images([image])[0]
        # The picture asked about is part of the query: mix it in, then take its neighbours.
        query = _normalised(query + image_vector)
        near = collection.search_vectors(image_vector, k * WIDEN, None, where, include_flagged)
        ids += [h.id for h in near[0] if h.id not in ids]
    if not ids:
        return []
    found, vectors = collection.vectors_of(ids)
    texts = collection.item_texts(found.tolist())
    image_part = vectors @ query
    text_part = _text_similarity(encoder, query, [texts.get(int(i)) for i in found])
    scores = image_weight * image_part + text_weight * np.nan_to_num(text_part)
    # Items without text are ranked by their image alone, not pulled down by a missing part.
    scores = np.where(np.isnan(text_part), image_part * (image_weight + text_weight), scores)
    order = np.argsort(-scores)[:k]
    sources = []
    for rank, i in enumerate(order, 1):
        item_id = int(found[i])
        item = collection.get(item_id)
        text = texts.get(item_id)
        caption = _caption(text)
        sources.append(
            Source(rank, item_id, item.path if item else "", caption, _ocr(text), float(scores[i]))
        )
    return sources


def build_prompt(
    question: str, sources: list[Source], *, max_chars: int = MAX_CONTEXT_CHARS
) -> list[dict]:
    """Chat messages: the rules, then the numbered sources (capped), then the question."""
    question = _checked(question)
    lines, used = [], 0
    for s in sources:
        line = source_line(s)
        if used + len(line) > max_chars and lines:
            break
        lines.append(line[:max_chars])
        used += len(line)
    context = "\n".join(lines) if lines else "(no sources found)"
    user = f"Sources:\n{context}\n\nQuestion: {question}\nAnswer (cite [n]):"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def source_line(s: Source) -> str:
    parts = [f"[{s.n}] {s.path}"]
    if s.caption:
        parts.append(s.caption[:MAX_SOURCE_CHARS])
    if s.ocr:
        parts.append(f"text printed on it: {s.ocr[:MAX_SOURCE_CHARS]}")
    return " — ".join(parts)


def gather_sources(
    collection, question: str, *, image=None, describe_image: bool = True, **retrieval
) -> list[Source]:
    """retrieve()'s sources; with `image`, describe's notes on it (tags, OCR, captioned
    neighbours) come first as source [1]."""
    sources = retrieve(collection, question, image=image, **retrieval)
    if image is None or not describe_image:
        return sources
    shifted = [Source(s.n + 1, s.id, s.path, s.caption, s.ocr, s.score) for s in sources]
    return [image_source(image, collection), *shifted]


def ask_stream(
    collection, question: str, llm, *, max_tokens: int = 200, **options
) -> tuple[list[Source], Iterator[str]]:
    """The sources now, and the answer's text pieces as the model writes them."""
    sources = gather_sources(collection, question, **options)
    return sources, llm.generate(build_prompt(question, sources), max_tokens=max_tokens)


def ask(collection, question: str, llm, **options) -> Answer:
    sources, pieces = ask_stream(collection, question, llm, **options)
    return Answer("".join(pieces).strip(), sources)


def image_source(image, collection) -> Source:
    """The query image as a source: what describe says about it."""
    from xmodal.apps.describe import describe, notes_text

    d = describe(image, collection.encoder, collection=collection)
    path = str(image) if not hasattr(image, "size") else "(the image asked about)"
    return Source(1, None, path, notes_text(d).replace("\n", "; "), d.ocr_text, 1.0)


def _text_similarity(encoder, query: np.ndarray, texts: list) -> np.ndarray:
    """cos(query, embedding of each item's text), NaN where an item has no text; the texts
    embedded in one batch."""
    out = np.full(len(texts), np.nan, dtype=np.float32)
    present = [(i, t.combined()) for i, t in enumerate(texts) if t is not None and t.combined()]
    if present:
        vectors = encoder.embed_texts([t[: MAX_SOURCE_CHARS * 2] for _, t in present])
        out[[i for i, _ in present]] = vectors @ query
    return out


def _caption(text) -> str:
    if text is None:
        return ""
    return " ".join(" ".join(p for p in (text.caption, text.embedded, text.body) if p).split())


def _ocr(text) -> str:
    return " ".join(text.ocr.split()) if text is not None and text.ocr else ""


def _normalised(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _checked(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError("empty question: ask something")
    return question.strip()
