"""Ray encoding options, embedding shards out of `embed image`, and `xmodal import`."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import click

from xmodal.cli.common import db_option, model_option, warn, warn_skipped


@dataclass(frozen=True)
class RayEngine:
    """--engine ray: where the encoding runs (None: a local cluster for this command)."""

    address: str | None

    def reader(self, model: str, batch_size: int | None):
        from xmodal.distributed.ray_encode import ray_reader

        return ray_reader(model, address=self.address, batch_size=batch_size, on_plan=_say_plan)


def _say_plan(plan) -> None:
    warn(f"ray: {plan.describe()}")


def engine_options(f):
    """--engine and --ray-address, handed to the command as one `engine`: None or RayEngine."""

    @functools.wraps(f)
    def command(*args, engine: str, ray_address: str | None, **kwargs):
        if ray_address and engine != "ray":
            raise click.UsageError("--ray-address needs --engine ray")
        chosen = (
            RayEngine(ray_address or os.environ.get("RAY_ADDRESS")) if engine == "ray" else None
        )
        return f(*args, engine=chosen, **kwargs)

    command = click.option(
        "--ray-address",
        default=None,
        help="with --engine ray: the cluster to run on (ray://HOST:10001 or HOST:6379); "
        "default $RAY_ADDRESS, else a local cluster started and stopped for this command",
    )(command)
    return click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="where images are decoded and embedded: this process, or a Ray cluster",
    )(command)


def embed_to_shards(engine: RayEngine, paths, out: str, model_name, batch_size) -> int:
    """`embed image --engine ray --out SHARDS/`: the images under PATHS as Parquet shards.
    Returns how many files were skipped."""
    from xmodal.catalog import FileRow
    from xmodal.config import get_settings
    from xmodal.distributed.ray_encode import cluster, encode_files
    from xmodal.distributed.shards import ShardWriter, check_new_folder
    from xmodal.models.registry import canonical_name
    from xmodal.scan import display_path, scan, to_bytes

    model = canonical_name(model_name or get_settings().model)
    check_new_folder(out)  # before any work
    found = scan([to_bytes(p) for p in paths])
    skipped = [(display_path(p), reason) for p, reason in found.problems]
    writer = None
    with cluster(engine.address):
        for read in encode_files(found.files, model, batch_size=batch_size, on_plan=_say_plan):
            if read.error:
                skipped.append((display_path(read.found.path), read.error))
                continue
            f, vector = read.found, read.prepared.vector
            if writer is None:
                roots = [os.fsdecode(r) for r in found.roots]
                writer = ShardWriter(out, model, len(vector), roots=roots)
            row = FileRow(
                f.path, f.size, f.mtime_ns, read.hash, read.width, read.height, read.caption
            )
            writer.write([row], vector[None, :])
    if writer is None:  # nothing readable: an empty, finished folder still says which model
        from xmodal.models import load_model

        writer = ShardWriter(out, model, load_model(model).dim)
    manifest = writer.close()
    warn_skipped(skipped)
    warn(f"wrote {manifest.count} {manifest.dim}-d embeddings of {model} to {out}")
    return len(skipped)


@click.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@db_option
@model_option
@click.option("--wait", is_flag=True, help="wait for another process writing the collection")
def import_cmd(folder, db, model_name, wait) -> None:
    """Load embedding shards (from `embed image --engine ray --out`) into a collection,
    encoding nothing. A new collection takes the shards' model; importing twice adds nothing."""
    from xmodal.distributed.importer import import_shards
    from xmodal.distributed.shards import read_manifest
    from xmodal.engine.collection import Collection

    manifest = read_manifest(folder)  # a bad folder fails before a collection is created
    with Collection.open(db, model_name or _existing_model(db) or manifest.model) as collection:
        report = import_shards(collection, folder, wait=wait)
        click.echo(
            f"imported {report.added}, replaced {report.replaced}, unchanged {report.unchanged}; "
            f"{collection.count()} items in {collection.db_path}"
        )


def _existing_model(db) -> str | None:
    """The model of an existing collection (None: a new one), so a mismatch is the importer's
    clear message rather than the generic one of opening with another model."""
    from xmodal.engine.collection import Collection
    from xmodal.errors import CollectionNotFoundError

    try:
        with Collection.open(db, create=False) as existing:
            return existing.model_name
    except CollectionNotFoundError:
        return None
