"""Parquet embedding shards: files' rows and vectors between an encoding job and a collection.

A shard folder holds `part-NNNNN.parquet` files and `manifest.json` (model, dim, count, the
files, the format version). One row per image: path (bytes, as the file system names it), size,
mtime_ns, hash (blake2b-128 of the bytes), width, height, caption, vector (fixed-size list of
float32, L2-normalised). Rows are written and read a row group at a time, so memory stays
bounded however large the folder. The manifest is written last: a folder without one is an
unfinished job, and is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.atomic import atomic_write
from xmodal.catalog import FileRow
from xmodal.errors import InvalidInputError, MissingExtraError

MANIFEST = "manifest.json"
FORMAT = "xmodal-embeddings"
FORMAT_VERSION = 1
ROWS_PER_SHARD = 100_000
ROW_GROUP = 1024


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingExtraError("embedding shards", "ray", "pyarrow") from None
    return pyarrow


@dataclass
class Manifest:
    model: str
    dim: int
    count: int = 0
    shards: list[dict] = field(default_factory=list)  # {"file": NAME, "count": N}
    roots: list[str] = field(default_factory=list)  # folders the rows were found under
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        record = {"format": FORMAT, **self.__dict__}
        return json.dumps(record, ensure_ascii=False, indent=1) + "\n"


def schema(dim: int):
    pa = _pyarrow()
    return pa.schema(
        [
            ("path", pa.binary()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("hash", pa.binary()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("caption", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def check_new_folder(folder: str | os.PathLike) -> Path:
    """A folder to write shards into: new, or holding no shards (appending would mix jobs)."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path} is a file, not a folder for shards")
    if (path / MANIFEST).exists() or any(path.glob("part-*.parquet")):
        raise InvalidInputError(f"{path} already holds shards: write to a new folder")
    return path


class ShardWriter:
    """Appends rows to a new shard folder; close() writes the manifest.

    with ShardWriter(folder, "lite", 512) as out:
        out.write(rows, vectors)
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        model: str,
        dim: int,
        *,
        roots: Sequence[str] = (),
        rows_per_shard: int = ROWS_PER_SHARD,
    ):
        self.folder = check_new_folder(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(model, dim, roots=list(roots))
        self._schema = schema(dim)
        self._rows_per_shard = rows_per_shard
        self._writer = None
        self._pending: list[FileRow] = []
        self._pending_vectors: list[np.ndarray] = []

    def write(self, rows: Sequence[FileRow], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float32).reshape(len(rows), -1)
        if vectors.shape[1] != self.manifest.dim:
            raise InvalidInputError(
                f"{vectors.shape[1]}-d vectors in a shard of {self.manifest.dim}-d ones"
            )
        self._pending.extend(rows)
        self._pending_vectors.append(vectors)
        if len(self._pending) >= ROW_GROUP:
            self._drain()

    def _drain(self) -> None:
        """Write the pending rows as row groups, starting a new shard file when one is full."""
        rows, vectors = self._pending, np.concatenate(self._pending_vectors or [np.zeros((0, 0))])
        self._pending, self._pending_vectors = [], []
        start = 0
        while start < len(rows):
            if self._writer is None:
                self._open_shard()
            current = self.manifest.shards[-1]
            n = min(len(rows) - start, ROW_GROUP, self._rows_per_shard - current["count"])
            self._writer.write_table(
                self._table(rows[start : start + n], vectors[start : start + n])
            )
            current["count"] += n
            self.manifest.count += n
            start += n
            if current["count"] >= self._rows_per_shard:
                self._writer.close()
                self._writer = None

    def _open_shard(self) -> None:
        pq = _pyarrow().parquet
        name = f"part-{len(self.manifest.shards):05d}.parquet"
        self._writer = pq.ParquetWriter(self.folder / name, self._schema)
        self.manifest.shards.append({"file": name, "count": 0})

    def _table(self, rows: Sequence[FileRow], vectors: np.ndarray):
        pa = _pyarrow()
        flat = pa.array(vectors.reshape(-1), pa.float32())
        columns = [
            pa.array([r.path for r in rows], pa.binary()),
            pa.array([r.size for r in rows], pa.int64()),
            pa.array([r.mtime_ns for r in rows], pa.int64()),
            pa.array([r.hash for r in rows], pa.binary()),
            pa.array([r.width for r in rows], pa.int32()),
            pa.array([r.height for r in rows], pa.int32()),
            pa.array([r.caption for r in rows], pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, self.manifest.dim),
        ]
        return pa.Table.from_arrays(columns, schema=self._schema)

    def close(self) -> Manifest:
        if self._pending:
            self._drain()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with atomic_write(self.folder / MANIFEST, "w", encoding="utf-8") as f:
            f.write(self.manifest.to_json())
        return self.manifest

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:  # no manifest: the folder reads as unfinished
            self._writer.close()


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a finished shard folder; InvalidInputError for anything else."""
    path = Path(folder) / MANIFEST
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(
            f"{folder} has no {MANIFEST}: not a shard folder, or its job did not finish"
        ) from None
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not an xmodal embeddings manifest")
    if record.get("version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path} is format version {record.get('version')}; this xmodal reads {FORMAT_VERSION}"
        )
    try:
        manifest = Manifest(
            model=str(record["model"]),
            dim=int(record["dim"]),
            count=int(record["count"]),
            shards=[{"file": str(s["file"]), "count": int(s["count"])} for s in record["shards"]],
            roots=[str(r) for r in record.get("roots", [])],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInputError(f"{path} is missing or mangles a field: {e}") from None
    for shard in manifest.shards:
        if Path(shard["file"]).name != shard["file"]:
            raise InvalidInputError(f"{path} names a shard outside its folder: {shard['file']}")
    return manifest


def read_shards(
    folder: str | os.PathLike, *, batch_size: int = ROW_GROUP
) -> Iterator[tuple[list[FileRow], np.ndarray]]:
    """(rows, vectors [n, dim]) a batch at a time, in the order written."""
    pq = _pyarrow().parquet
    manifest = read_manifest(folder)
    wanted = schema(manifest.dim)
    for shard in manifest.shards:
        path = Path(folder) / shard["file"]
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise InvalidInputError(f"cannot read shard {path}: {e}") from None
        if not parquet.schema_arrow.equals(wanted):
            raise InvalidInputError(
                f"shard {path} does not have the columns of {manifest.dim}-d embeddings"
            )
        for batch in parquet.iter_batches(batch_size=batch_size):
            yield _rows(batch), _vectors(batch, manifest.dim)


def _rows(batch) -> list[FileRow]:
    columns = [batch.column(name).to_pylist() for name in schema(1).names[:-1]]
    return [FileRow(*values) for values in zip(*columns)]


def _vectors(batch, dim: int) -> np.ndarray:
    values = batch.column("vector")
    if values.null_count:
        raise InvalidInputError("a shard row has no vector")
    return values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
