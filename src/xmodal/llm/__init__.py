"""Language models behind one interface: a local GGUF / transformers model, or any
OpenAI-compatible server."""

from __future__ import annotations

from xmodal.llm.base import LanguageModel, LlmError

__all__ = ["LanguageModel", "LlmError", "load_llm"]


def load_llm(spec: str | None = None) -> LanguageModel:
    """None or 'smollm2': the packaged SmolLM2-135M-Instruct; 'gguf:/path/model.gguf';
    'hf:/local/folder'; 'openai:http://127.0.0.1:11434/v1#MODEL'. Default: $XMODAL_LLM."""
    import os

    spec = (spec or os.environ.get("XMODAL_LLM") or "").strip() or None
    if spec and spec.startswith("openai:"):
        from xmodal.llm.openai_compat import parse_spec

        return parse_spec(spec)
    from xmodal.llm.local import load_local

    return load_local(spec)
