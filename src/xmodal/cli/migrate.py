"""`xmodal migrate`: a collection's index onto Milvus, or back onto a FAISS kind."""

from __future__ import annotations

import click

from xmodal.cli.common import db_option, warn


@click.command("migrate")
@db_option
@click.option(
    "--to",
    "to",
    required=True,
    help="where the index goes: a Milvus URI (./vectors.db for milvus-lite, http://HOST:19530 "
    "for a server, token in XMODAL_MILVUS_TOKEN), a milvus spec (milvus:uri=URI,index=hnsw), or "
    "a FAISS kind (flat, hnsw, ivf, ivf-pq, with parameters)",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="stored vectors sent per step (default 10000)",
)
def migrate_cmd(db, to, batch_size) -> None:
    """Move the collection's index to Milvus or a FAISS kind, from its stored vectors.

    Nothing is encoded. Resumable: if it is stopped, the collection keeps its old index, and
    running it again sends only what is missing. Later runs of `index` keep the new index.
    """
    from xmodal.distributed.migrate import migrate

    def progress(done: int, total: int) -> None:
        warn(f"moved {done}/{total} vectors")

    report = migrate(db, to, batch_size=batch_size, progress=progress)
    click.echo(f"index is now {report.spec} ({report.count} vectors)")
