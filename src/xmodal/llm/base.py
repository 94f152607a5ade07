"""The language-model contract: chat messages in, text pieces out as they are generated."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from xmodal.errors import InvalidInputError, LlmError

__all__ = ["LanguageModel", "LlmError"]

ROLES = ("system", "user", "assistant")


class LanguageModel(ABC):
    """A chat model. `generate` streams; `complete` is the same text joined."""

    name: str = "llm"

    @abstractmethod
    def _stream(
        self, messages: list[dict], max_tokens: int, temperature: float, stop: list[str]
    ) -> Iterator[str]:
        """Text pieces for checked messages (backends implement this one method)."""

    def generate(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        checked = check_messages(messages)
        if max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {temperature}")
        return _until_stop(self._stream(checked, max_tokens, temperature, list(stop or [])), stop)

    def complete(self, messages: Sequence[dict], **options) -> str:
        return "".join(self.generate(messages, **options))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def check_messages(messages: Sequence[dict]) -> list[dict]:
    if not messages:
        raise InvalidInputError("no messages: give at least one {'role', 'content'}")
    out = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise InvalidInputError(f"a message needs a role in {ROLES} and text content: {m!r}")
        out.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in out):
        raise InvalidInputError("empty messages: every content is blank")
    return out


def _until_stop(pieces: Iterator[str], stop: Sequence[str] | None) -> Iterator[str]:
    """Cut the stream at the first stop string, which may span pieces (backends that cannot
    stop by themselves rely on this; those that can are cut the same way)."""
    if not stop:
        yield from pieces
        return
    keep = max(len(s) for s in stop) - 1
    try:
        yield from _cut(pieces, stop, keep)
    finally:
        pieces.close()  # a local model's generation thread stops with its stream


def _cut(pieces: Iterator[str], stop: Sequence[str], keep: int) -> Iterator[str]:
    held = ""
    for piece in pieces:
        held += piece
        cut = min((i for i in (held.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            if held[:cut]:
                yield held[:cut]
            return
        if len(held) > keep:
            yield held[: len(held) - keep]
            held = held[len(held) - keep :]
    if held:
        yield held
