"""The `xmodal` command line. The only package (with the server) that prints or exits.

One module per command group; `main` gathers them.
"""

from __future__ import annotations

import json

import click

from xmodal.cli.ask import ask_cmd, describe_cmd
from xmodal.cli.collection import dedup_cmd, demo_cmd, index_cmd, search_cmd
from xmodal.cli.common import ErrorGroup
from xmodal.cli.embed import classify_cmd, embed_cmd, similarity_cmd
from xmodal.cli.eval import eval_cmd
from xmodal.cli.export import export_cmd
from xmodal.cli.generate import generate_cmd
from xmodal.cli.migrate import migrate_cmd
from xmodal.cli.moderate import moderate_cmd
from xmodal.cli.serve import serve_cmd
from xmodal.cli.shards import import_cmd
from xmodal.cli.train import train_cmd


@click.group(cls=ErrorGroup)
@click.version_option(package_name="xmodal")
def main() -> None:
    """Texts and images in one vector space: index and search photos, classify, embed; offline."""


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per model")
def models_cmd(as_json: bool) -> None:
    """List model names with their dimension and whether they can load now."""
    from xmodal.models import list_models

    infos = list_models()
    if as_json:
        for info in infos:
            click.echo(json.dumps(info.__dict__, ensure_ascii=False))
        return
    width = max(len(i.name) for i in infos)
    click.echo(f"{'NAME':<{width}}  {'DIM':>5}  {'READY':<5}  NOTE")
    for i in infos:
        dim = str(i.dim) if i.dim else "?"
        click.echo(f"{i.name:<{width}}  {dim:>5}  {'yes' if i.available else 'no':<5}  {i.note}")


for command in (
    embed_cmd,
    classify_cmd,
    similarity_cmd,
    index_cmd,
    search_cmd,
    dedup_cmd,
    eval_cmd,
    serve_cmd,
    demo_cmd,
    train_cmd,
    migrate_cmd,
    import_cmd,
    export_cmd,
    moderate_cmd,
    ask_cmd,
    describe_cmd,
    generate_cmd,
):
    main.add_command(command)

__all__ = ["main"]
