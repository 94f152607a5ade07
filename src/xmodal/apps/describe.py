"""A sentence about an image: the encoder's best tags (objects, scene, colour, style,
lighting), the words printed on it (OCR), and the nearest captioned items of a collection; a
language model puts them into one sentence, a template does without one."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from xmodal.apps.tags import Tag, best_tags
from xmodal.errors import MissingExtraError
from xmodal.images import ImageSource, load_image

MAX_OCR_CHARS = 300  # printed text kept for the sentence and the prompt
NEIGHBOURS = 3
# Below this cosine an image is not like the one described, and its caption would mislead (with
# lite, unrelated photos sit near 0.05 and the closest pairs of the sample photos near 0.8).
NEIGHBOUR_MIN_SIMILARITY = 0.5
SYSTEM = (
    "You rewrite a rough draft describing an image as one short, fluent sentence. Keep the "
    "draft's first object as the subject. Add nothing that is not in the draft or the notes."
)


@dataclass(frozen=True)
class Neighbour:
    id: int
    path: str
    caption: str
    score: float


@dataclass(frozen=True)
class Description:
    sentence: str
    concepts: list[Tag]
    ocr_text: str = ""
    neighbours: list[Neighbour] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def describe(
    image: ImageSource,
    encoder,
    *,
    collection=None,
    ocr=None,
    llm=None,
    vector: np.ndarray | None = None,
) -> Description:
    """Describe one image. ocr: an xmodal.ocr.OcrReader, None for a shared one when the ocr
    extra is installed, False for none. llm: a LanguageModel, or None for the template.
    vector: the image's embedding when the caller has it."""
    picture = load_image(image)
    if vector is None:
        vector = encoder.embed_images([picture])[0]
    concepts = best_tags(encoder, vector)
    notes = Description("", concepts, _read_text(picture, ocr), _neighbours(collection, vector))
    sentence = template_sentence(notes) if llm is None else write_sentence(notes, llm)
    return Description(sentence, concepts, notes.ocr_text, notes.neighbours)


def template_sentence(d: Description) -> str:
    by = _by_group(d.concepts)
    objects = by.get("object", [])
    sentence = f"{_capital(by['style'][0])} of {_article(objects[0])}" if objects else "An image"
    if len(objects) > 1:  # lite's first guess is often second best: say what else it may be
        sentence += f" (or {' or '.join(_article(o) for o in objects[1:])})"
    if by.get("detail"):
        sentence += f", like {_article(by['detail'][0])}"
    details = [by[g][0] for g in ("scene", "colour", "lighting") if by.get(g)]
    sentence += ", " + ", ".join(details) if details else ""
    if d.ocr_text:
        sentence += f', with the text "{d.ocr_text}"'
    if d.neighbours:
        sentence += f"; like {d.neighbours[0].caption!r}"
    return sentence + "."


def notes_text(d: Description) -> str:
    """The notes an LLM (or `ask --image`) sees about the image."""
    by = _by_group(d.concepts)
    lines = [f"Objects it most resembles: {', '.join(by.get('object', []))}"]
    lines.append(f"Closest of 1000 ImageNet classes: {', '.join(by.get('detail', []))}")
    lines += [f"{g.capitalize()}: {by[g][0]}" for g in ("scene", "colour", "style", "lighting")]
    if d.ocr_text:
        lines.append(f"Text printed on it: {d.ocr_text}")
    lines += [f"A similar image is captioned: {n.caption}" for n in d.neighbours]
    return "\n".join(lines)


def write_sentence(d: Description, llm) -> str:
    """The notes on an image turned into one sentence by a language model."""
    # A 135M model writes about whatever it reads first: the draft puts the object there.
    user = f"Draft: {template_sentence(d)}\n\nNotes:\n{notes_text(d)}\n\nSentence:"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    text = llm.complete(messages, max_tokens=60, stop=["\n"]).strip()
    # Small models run on (and repeat themselves): keep the first sentence, each listed phrase
    # once. (A repetition penalty would also stop the model copying the notes' words.)
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip()
    phrases = list(dict.fromkeys(p.strip() for p in first.split(",") if p.strip()))
    first = ", ".join(phrases)
    if first and first[-1] not in ".!?":
        first += "."
    return first or template_sentence(d)  # a model that says nothing still gets a sentence


def _read_text(picture, ocr) -> str:
    if ocr is False:
        return ""
    if ocr is None:
        ocr = _shared_reader()
        if ocr is None:
            return ""
    text = " ".join(ocr.read(picture).text.split())
    return text[:MAX_OCR_CHARS]


_READER = []


def _shared_reader():
    if not _READER:
        from xmodal.ocr import OcrReader

        reader = OcrReader()
        try:
            reader._load()  # fails now, not per image, when the ocr extra is missing
        except MissingExtraError:
            reader = None
        _READER.append(reader)
    return _READER[0]


def _neighbours(collection, vector) -> list[Neighbour]:
    if collection is None or collection.count() == 0:
        return []
    hits = collection.search_vectors(vector, NEIGHBOURS * 4)[0]
    texts = collection.item_texts([h.id for h in hits])
    found = []
    for hit in hits:
        text = texts.get(hit.id)
        caption = (text.caption or text.embedded) if text else ""
        if caption and hit.score >= NEIGHBOUR_MIN_SIMILARITY:
            found.append(Neighbour(hit.id, hit.path, " ".join(caption.split())[:200], hit.score))
    return found[:NEIGHBOURS]


def _by_group(concepts: list[Tag]) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for tag in concepts:
        by.setdefault(tag.group, []).append(tag.text)
    return by


def _article(noun: str) -> str:
    vowel = noun[:1].lower() in "aeiou" and not noun.lower().startswith(("uni", "use", "eu"))
    return f"an {noun}" if vowel else f"a {noun}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
