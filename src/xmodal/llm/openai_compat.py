"""Any OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp's server) over HTTP, with the
standard library only: POST {url}/chat/completions, streamed as server-sent events.

The API key, if the server wants one, comes from XMODAL_LLM_API_KEY (never from a spec that
would end up in shell history or logs).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from xmodal.errors import InvalidInputError
from xmodal.llm.base import LanguageModel, LlmError

API_KEY_ENV = "XMODAL_LLM_API_KEY"
DEFAULT_TIMEOUT = 120.0  # seconds to wait for the connection and for each chunk of the reply
_MAX_LINE = 1 << 20  # one SSE line longer than this is not a chat chunk


class OpenAICompatModel(LanguageModel):
    def __init__(self, url: str, model: str, *, timeout: float = DEFAULT_TIMEOUT):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInputError(f"not an http(s) URL for a language model: {url!r}")
        if not model:
            raise InvalidInputError("an OpenAI-compatible endpoint needs a model name: URL#MODEL")
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.name = f"openai:{self.url}#{model}"

    def _stream(self, messages, max_tokens, temperature, stop) -> Iterator[str]:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if stop:
            body["stop"] = stop
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(API_KEY_ENV)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), headers, method="POST"
        )
        try:
            reply = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise LlmError(f"{self.name}: HTTP {e.code} {e.reason}: {_excerpt(e)}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise LlmError(f"{self.name}: cannot reach the server: {reason}") from e
        with reply:
            kind = reply.headers.get_content_type()
            try:
                if kind == "text/event-stream":
                    yield from self._events(reply)
                else:  # a server that ignores stream=true answers with one JSON object
                    yield _message_text(_json(reply.read(), self.name), self.name)
            except (TimeoutError, OSError) as e:
                raise LlmError(f"{self.name}: the reply broke off: {e}") from e

    def _events(self, reply) -> Iterator[str]:
        for raw in iter(lambda: reply.readline(_MAX_LINE), b""):
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            chunk = _json(data, self.name)
            if "error" in chunk:
                raise LlmError(f"{self.name}: the server reported an error: {chunk['error']}")
            try:
                choice = chunk["choices"][0] if chunk["choices"] else {}
                piece = (choice.get("delta") or {}).get("content") or ""
            except (KeyError, TypeError, AttributeError) as e:
                raise LlmError(f"{self.name}: malformed chunk: {data[:200]!r}") from e
            if piece:
                yield piece


def parse_spec(spec: str) -> OpenAICompatModel:
    """'openai:http://127.0.0.1:11434/v1#MODEL'."""
    rest = spec.removeprefix("openai:")
    url, _, model = rest.partition("#")
    return OpenAICompatModel(url, model)


def _json(data: bytes, name: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise LlmError(f"{name}: the reply is not JSON: {data[:200]!r}") from e
    if not isinstance(value, dict):
        raise LlmError(f"{name}: the reply is not a JSON object: {data[:200]!r}")
    return value


def _message_text(reply: dict, name: str) -> str:
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as e:
        raise LlmError(f"{name}: malformed reply, no choices[0].message.content") from e
    if not isinstance(text, str):
        raise LlmError(f"{name}: malformed reply, the content is not text")
    return text


def _excerpt(error: urllib.error.HTTPError) -> str:
    try:
        return error.read(300).decode("utf-8", "replace").strip() or "(no body)"
    except OSError:
        return "(no body)"
