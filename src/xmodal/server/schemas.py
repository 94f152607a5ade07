"""Request and response bodies (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class EmbedTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[Text] = Field(min_length=1, max_length=256, examples=[["a cat", "बिल्ली"]])


class Embeddings(BaseModel):
    model: str
    dim: int
    embeddings: list[list[float]]


class AudioEmbeddings(Embeddings):
    transcripts: list[str] | None = Field(
        None, description="what each clip says, from a model that transcribes; else null"
    )
    seconds: list[float] = Field(description="seconds of each clip embedded")
    truncated: list[bool] = Field(
        description="clips longer than XMODAL_MAX_AUDIO_SECONDS, embedded from their start"
    )


class Similarity(BaseModel):
    model: str
    cosine: float = Field(description="cosine similarity of the text and the image (or sound)")
    score: float = Field(description="cosine times the model's logit scale")


class Hit(BaseModel):
    id: int
    path: str = Field(description="relative to the indexed folder that holds it")
    score: float = Field(description="cosine; in hybrid mode the fused score")
    vector_score: float | None = Field(None, description="hybrid mode: the cosine")
    text_score: float | None = Field(None, description="hybrid and text modes: full-text score")
    type: str = Field(
        "image", description="the item's kind: image, text (a .txt/.md item), audio or video"
    )
    text: str | None = Field(None, description="the item's caption, or a text item's start")
    transcript: str | None = Field(None, description="a sound's or video's speech, its start")
    start: float | None = Field(None, description="a video segment's start, seconds")
    end: float | None = Field(None, description="a video segment's end, seconds")
    thumbnail: str | None = Field(description="null for a sound")
    file: str = Field(description="a video segment's is the whole video: seek to start")


class SearchResults(BaseModel):
    query: str = Field(description="the query as understood, term by term")
    results: list[Hit]


class LabelProbability(BaseModel):
    label: str
    probability: float


class Classification(BaseModel):
    model: str
    labels: list[LabelProbability]


class ItemInfo(BaseModel):
    id: int
    path: str
    width: int
    height: int
    size: int = Field(description="bytes")
    caption: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    type: str = "image"
    ocr: str | None = Field(None, description="words printed on the image (index --ocr)")
    flagged: list[str] | None = Field(None, description="moderation: flagged categories")
    duration: float | None = Field(None, description="seconds of a sound or a video")
    start: float | None = Field(None, description="a video segment's start, seconds")
    end: float | None = Field(None, description="a video segment's end, seconds")
    thumbnail: str | None = Field(description="null for a sound")
    file: str


class Health(BaseModel):
    status: str
    model: str
    dim: int
    items: int


class ModerationResult(BaseModel):
    file: str = Field(description="the uploaded file's name")
    safe: bool
    flagged: list[str] = Field(description="categories over their threshold")
    scores: dict[str, float] = Field(description="per category; nsfw: open_nsfw's own score")


class Moderation(BaseModel):
    model: str
    policy: str = Field(description="fingerprint of the categories and models that judged")
    results: list[ModerationResult]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text
    k: int = Field(5, ge=1, le=50, description="sources to retrieve")
    image_weight: float = Field(0.5, ge=0, le=100, description="weight of image similarity")
    text_weight: float = Field(0.5, ge=0, le=100, description="weight of the items' text")
    item: int | None = Field(
        None, ge=0, le=2**63 - 1, description="ask about this indexed item's image"
    )
    where: dict[str, Any] | None = Field(None, description="a filter, as for /search")
    include_flagged: bool = False
    generate: bool = Field(True, description="false: return the sources and context only")
    stream: bool = Field(
        False, description="true: NDJSON lines: sources first, then text pieces, then the end"
    )
    max_tokens: int = Field(200, ge=1, le=1024)


class AskSource(BaseModel):
    n: int
    id: int | None = Field(description="the item; null for the image asked about")
    path: str
    caption: str
    ocr: str
    score: float


class AskAnswer(BaseModel):
    question: str
    answer: str | None = Field(description="the model's answer; null without generate")
    sources: list[AskSource] = Field(description="listed by xmodal, not by the model")
    context: str = Field(description="the numbered sources as given to the model")


class Concept(BaseModel):
    group: str
    text: str
    score: float


class DescribeNeighbour(BaseModel):
    id: int
    path: str
    caption: str
    score: float


class DescribeResult(BaseModel):
    sentence: str
    concepts: list[Concept]
    ocr_text: str
    neighbours: list[DescribeNeighbour]
