"""The language-model layer: an OpenAI-compatible client against a small local server (the one
stand-in: no such server runs here), stop strings, bad input, and the packaged SmolLM2."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from xmodal.errors import InvalidInputError, ModelNotFoundError
from xmodal.llm import LlmError, load_llm
from xmodal.llm.openai_compat import OpenAICompatModel

MESSAGES = [{"role": "user", "content": "Say hello."}]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        self.server.requests.append(
            (self.path, dict(self.headers), json.loads(self.rfile.read(length)))
        )
        mode = self.server.mode
        if mode == "http-error":
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"model is loading")
            return
        self.send_response(200)
        if mode == "json":
            body = {"choices": [{"message": {"role": "assistant", "content": "Hello there."}}]}
            self._send("application/json", json.dumps(body).encode())
            return
        if mode == "garbage":
            self._send("text/event-stream", b"data: {not json\n\n")
            return
        events = [": keep-alive", 'data: {"choices":[{"delta":{"role":"assistant"}}]}']
        events += [
            "data: " + json.dumps({"choices": [{"delta": {"content": piece}}]})
            for piece in ("Hel", "lo, ", "wor", "ld. STOP more")
        ]
        events.append("data: [DONE]")
        self._send("text/event-stream", "".join(e + "\n\n" for e in events).encode())

    def _send(self, kind: str, body: bytes):
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.mode = [], "sse"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_streams_sse_pieces_and_sends_an_openai_request(server, monkeypatch):
    monkeypatch.setenv("XMODAL_LLM_API_KEY", "secret-key")
    llm = load_llm(f"openai:{_url(server)}#tiny-model")
    pieces = list(llm.generate(MESSAGES, max_tokens=32, temperature=0.2))
    assert pieces[:3] == ["Hel", "lo, ", "wor"]
    assert "".join(pieces) == "Hello, world. STOP more"
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer secret-key"
    assert body == {
        "model": "tiny-model",
        "messages": MESSAGES,
        "max_tokens": 32,
        "temperature": 0.2,
        "stream": True,
    }


def test_stop_strings_cut_the_stream_even_across_pieces(server):
    llm = OpenAICompatModel(_url(server), "m")
    assert llm.complete(MESSAGES, stop=["STOP"]) == "Hello, world. "
    assert llm.complete(MESSAGES, stop=["lo, w"]) == "Hel"  # spans two pieces
    assert server.requests[0][2]["stop"] == ["STOP"]


def test_a_non_streaming_json_reply_is_understood(server):
    server.mode = "json"
    assert OpenAICompatModel(_url(server), "m").complete(MESSAGES) == "Hello there."
    assert "Authorization" not in server.requests[0][1]


@pytest.mark.parametrize(("mode", "message"), [("http-error", "HTTP 503"), ("garbage", "JSON")])
def test_server_failures_are_llm_errors(server, mode, message):
    server.mode = mode
    with pytest.raises(LlmError, match=message):
        OpenAICompatModel(_url(server), "m").complete(MESSAGES)


def test_connection_refused_is_an_llm_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LlmError, match="cannot reach"):
        OpenAICompatModel(f"http://127.0.0.1:{port}/v1", "m", timeout=5).complete(MESSAGES)


@pytest.mark.parametrize(
    "messages",
    [[], [{"role": "user", "content": "  "}], [{"role": "wizard", "content": "hi"}], [{}]],
)
def test_bad_messages_are_refused(messages):
    with pytest.raises(InvalidInputError):
        OpenAICompatModel("http://127.0.0.1:1/v1", "m").complete(messages)


def test_bad_specs_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="model name"):
        load_llm("openai:http://127.0.0.1:1/v1")
    with pytest.raises(InvalidInputError, match="URL"):
        load_llm("openai:ftp://example#m")
    with pytest.raises(ModelNotFoundError):
        load_llm(f"gguf:{tmp_path}/missing.gguf")
    with pytest.raises(ModelNotFoundError):
        load_llm("nonsense")


def test_a_corrupt_gguf_is_an_llm_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LlmError, match="cannot load"):
        load_llm(f"gguf:{bad}")


@pytest.mark.slow
def test_the_packaged_model_answers_a_grounded_question():
    llm = load_llm(None)
    messages = [
        {"role": "system", "content": "Answer from the given text only, in a few words."},
        {
            "role": "user",
            "content": "Text: The keeper of the lighthouse is Ravi.\n"
            "Question: Who keeps the lighthouse?",
        },
    ]
    pieces = list(llm.generate(messages, max_tokens=24))
    assert len(pieces) > 1  # streamed, not one block
    assert "Ravi" in "".join(pieces)
    assert load_llm("smollm2") is llm  # loaded once
