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


class Similarity(BaseModel):
    model: str
    cosine: float = Field(description="cosine similarity of the text and the image, -1..1")
    score: float = Field(description="cosine times the model's logit scale")


class Hit(BaseModel):
    id: int
    path: str = Field(description="relative to the indexed folder that holds it")
    score: float = Field(description="cosine; in hybrid mode the fused score")
    vector_score: float | None = Field(None, description="hybrid mode: the cosine")
    text_score: float | None = Field(None, description="hybrid and text modes: full-text score")
    type: str = Field("image", description="image, or text (a .txt/.md item)")
    text: str | None = Field(None, description="the item's caption, or a text item's start")
    thumbnail: str
    file: str


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
    thumbnail: str
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
