"""Encoding on a Ray cluster: files read and decoded in Ray tasks, embedded in an actor pool.

    files -> map_batches(decode) in tasks -> map_batches(_Embedder) on a pool of actors -> rows

Each task reads, hashes and decodes a few files exactly as the in-process indexer does
(engine.indexer.read_file), so the vectors are the same; files whose bytes are already indexed
are hashed but not decoded. Each actor loads the model once and embeds the decoded images
(resize, normalise, forward pass). Ray Data streams the blocks and keeps them in order, so
memory stays bounded by the batches in flight, and shows progress per stage.

Without an address a local cluster is started for the job and stopped after it; with one,
`ray.init(address=...)` joins that cluster and nothing is started or stopped. A process
already connected to Ray (a notebook, a test) keeps its connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from xmodal.config import get_settings
from xmodal.engine.indexer import Embedded, FileRead, Reader, read_file
from xmodal.errors import ClusterError, DeviceError, MissingExtraError, XmodalError
from xmodal.scan import FoundFile

# Files per decode task: decoded images are full size, so a task's output stays small.
DECODE_BATCH = 8
DECODED_PHOTO_BYTES = 12_000_000 * 3  # a 12-megapixel photo as RGB pixels
# A model's matrix products stop getting faster at about this many threads; past it, more
# actors give more images per second than more threads per actor.
MAX_THREADS_PER_MODEL = 4


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError("Ray encoding (--engine ray)", "ray", "ray") from None
    return ray


@dataclass(frozen=True)
class PoolPlan:
    """How many model actors run, and what each one reserves on the cluster."""

    size: int
    num_cpus: float
    num_gpus: float
    threads: int  # the model's intra-op threads in each actor

    def describe(self) -> str:
        where = f"{self.num_gpus:g} GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"{self.size} model actor(s), each on {where} with {self.threads} thread(s)"


def plan_pool(cpus: float, gpus: float, device: str, threads: int | None = None) -> PoolPlan:
    """The actor pool for a cluster of `cpus` CPUs and `gpus` GPUs.

    On GPUs: one actor per GPU (num_gpus=1 each), since the GPU does the encoding.
    On CPUs: one CPU is left to the decode tasks (actors holding every CPU would starve them
    and the job would stall); each actor runs its model on `threads` threads (default: up to
    MAX_THREADS_PER_MODEL) and reserves as many CPUs, so size = (cpus - 1) // threads, at
    least 1. On 2 CPUs that is one actor on one thread beside one decode task.
    """
    if device.startswith("cuda"):
        if gpus < 1:
            raise DeviceError(f"--device {device}, but the Ray cluster has no GPU")
        return PoolPlan(int(gpus), 1, 1, threads or 1)
    free = int(cpus) - 1
    if free < 1:  # a one-CPU cluster: the actor reserves nothing, decoding and encoding share
        return PoolPlan(1, 0, 0, 1)
    per_actor = max(1, min(threads or MAX_THREADS_PER_MODEL, free))
    return PoolPlan(max(1, free // per_actor), per_actor, 0, per_actor)


@contextlib.contextmanager
def cluster(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Connected to Ray for a block: `address`'s cluster, else a local one started for it."""
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address)
        else:
            # "local": a new cluster even when $RAY_ADDRESS names another one.
            # On loopback: a local cluster has no business on the machine's other addresses.
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local cluster"
        raise ClusterError(f"cannot start or reach Ray at {where}: {e}") from None
    try:
        yield
    finally:
        ray.shutdown()  # stops a local cluster; from a remote one it only disconnects


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at: ray.init() waits minutes for it."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


class _AsDecoded:
    """read_file's encoder inside a task: files decode at the model's input size (as in
    process) and the decoded image is what goes to the actors."""

    def __init__(self, decode_size: int | None):
        self.decode_size = decode_size

    @staticmethod
    def prepare_image(image):
        return image


def _decode(
    batch: dict[str, np.ndarray], known: Container[bytes], decode_size: int | None
) -> dict[str, np.ndarray]:
    """A Ray task: read, hash and decode a few files (RGB pixels as bytes; none if known)."""
    out: dict[str, list] = {k: [] for k in ("path", "size", "mtime_ns", "hash", "error")}
    out.update(width=[], height=[], caption=[], pixels=[], pixels_width=[], pixels_height=[])
    out.update(described=[], sidecars=[])
    as_decoded = _AsDecoded(decode_size)
    for path, size, mtime_ns, sidecars in zip(
        batch["path"], batch["size"], batch["mtime_ns"], batch["sidecars"]
    ):
        found = FoundFile(bytes(path), int(size), int(mtime_ns), str(sidecars))
        read = read_file(found, known, lambda: as_decoded)
        image = read.prepared
        # The decoded image may be smaller than the file's full size (width, height).
        out["pixels_width"].append(image.width if image is not None else 0)
        out["pixels_height"].append(image.height if image is not None else 0)
        out["path"].append(read.found.path)
        out["size"].append(read.found.size)
        out["mtime_ns"].append(read.found.mtime_ns)
        out["hash"].append(read.hash)
        out["error"].append(read.error)
        out["width"].append(read.width)
        out["height"].append(read.height)
        out["caption"].append(read.caption or "")  # no sidecar and an empty one both mean None
        out["described"].append(read.embedded)
        out["sidecars"].append(read.found.sidecars)
        out["pixels"].append(image.tobytes() if image is not None else b"")
    return {k: np.array(v, dtype=object if k in _OBJECT_COLUMNS else None) for k, v in out.items()}


_OBJECT_COLUMNS = {"path", "hash", "error", "caption", "pixels", "described", "sidecars"}


class _Embedder:
    """A Ray actor: one model, loaded once, embedding the decoded images of each batch."""

    def __init__(self, model: str, device: str, threads: int):
        os.environ["XMODAL_NUM_THREADS"] = str(threads)
        with contextlib.suppress(ImportError):
            import torch

            torch.set_num_threads(threads)
        from xmodal.models import load_model

        self.encoder = load_model(model, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        pixels = batch.pop("pixels")
        todo = [i for i, p in enumerate(pixels) if len(p)]
        vectors = np.zeros((len(pixels), self.encoder.dim), np.float32)
        if todo:
            images = [
                Image.frombytes(
                    "RGB",
                    (int(batch["pixels_width"][i]), int(batch["pixels_height"][i])),
                    pixels[i],
                )
                for i in todo
            ]
            prepared = [self.encoder.prepare_image(image) for image in images]
            vectors[todo] = self.encoder.embed_prepared(prepared)
        batch["vector"] = vectors
        batch["embedded"] = np.array([len(p) > 0 for p in pixels], bool)
        return batch


def encode_files(
    files: Sequence[FoundFile],
    model: str,
    *,
    known: Container[bytes] = frozenset(),
    device: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    on_plan=None,
) -> Iterator[FileRead]:
    """Read and embed `files` on the connected Ray cluster (see cluster()), in order: one
    FileRead per file, its vector as Embedded unless its hash is in `known` or it failed."""
    ray = _ray()
    if not files:
        return
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0)
    device = device or get_settings().device
    if device == "auto":  # the cluster's GPUs, not the driver's, decide
        device = "cuda" if gpus >= 1 else "cpu"
    plan = plan_pool(resources.get("CPU", 1), gpus, device, threads)
    if on_plan is not None:
        on_plan(plan)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    items = [
        {"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "sidecars": f.sidecars}
        for f in files
    ]
    # The memory a task's decoded images take keeps a node from running more decode tasks
    # than it can hold; as remote arguments of their own, it also keeps Ray Data from fusing
    # these tasks into the actors (it fuses stages whose arguments are equal), which would
    # decode inside the pool instead of beside it.
    dataset = ray.data.from_items(items).map_batches(
        _decode,
        batch_size=DECODE_BATCH,
        batch_format="numpy",
        fn_kwargs={"known": known, "decode_size": _decode_size(model)},
        memory=DECODE_BATCH * DECODED_PHOTO_BYTES,
    )
    dataset = dataset.map_batches(
        _Embedder,
        batch_size=batch_size or get_settings().batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.size),
        # Ray shows each GPU actor its own GPU only, as cuda:0.
        fn_constructor_kwargs={
            "model": model,
            "device": "cuda" if plan.num_gpus else device,
            "threads": plan.threads,
        },
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield from _reads(batch)
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, XmodalError):
            raise cause from None
        raise ClusterError(f"the Ray encoding job failed: {e}") from None


def _decode_size(model: str) -> int | None:
    """The side the model's images are decoded at (encoders load lazily: this costs no image
    tower)."""
    from xmodal.models import load_model

    return load_model(model, device="cpu").decode_size


def _reads(batch: dict[str, np.ndarray]) -> Iterator[FileRead]:
    for i in range(len(batch["path"])):
        found = FoundFile(
            bytes(batch["path"][i]),
            int(batch["size"][i]),
            int(batch["mtime_ns"][i]),
            str(batch["sidecars"][i]),
        )
        yield FileRead(
            found,
            bytes(batch["hash"][i]),
            str(batch["error"][i]),
            Embedded(np.asarray(batch["vector"][i], np.float32)) if batch["embedded"][i] else None,
            int(batch["width"][i]),
            int(batch["height"][i]),
            str(batch["caption"][i]) or None,
            str(batch["described"][i]),
        )


def ray_reader(
    model: str,
    *,
    address: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    on_plan=None,
) -> Reader:
    """A reader for Collection.index(reader=...): the changed files are embedded on Ray. The
    cluster is joined (or started) only once there is something to read."""

    def read(files: list[FoundFile], known: Container[bytes]) -> Iterator[FileRead]:
        with cluster(address):
            yield from encode_files(
                files,
                model,
                known=known,
                device=device,
                batch_size=batch_size,
                threads=threads,
                on_plan=on_plan,
            )

    return read
