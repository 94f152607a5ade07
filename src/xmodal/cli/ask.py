"""`xmodal ask` (answers from a collection, with sources) and `xmodal describe` (a sentence
about each image)."""

from __future__ import annotations

import json

import click

from xmodal.cli.common import db_option, model_option

LLM_HELP = (
    "language model: smollm2 (the packaged SmolLM2-135M, default), gguf:/path/model.gguf, "
    "hf:/local/folder, or openai:http://127.0.0.1:11434/v1#MODEL (key from "
    "$XMODAL_LLM_API_KEY). Default: $XMODAL_LLM, else smollm2"
)


def _open(db: str | None):
    from xmodal.engine.collection import Collection

    return Collection.open(db, create=False)


@click.command("ask")
@click.argument("question")
@db_option
@click.option("--image", "image_path", default=None, help="an image the question is about")
@click.option("--llm", "llm_spec", default=None, help=LLM_HELP)
@click.option("-k", "k", type=click.IntRange(min=1, max=50), default=5, help="sources given")
@click.option("--image-weight", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--text-weight", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--no-generate", is_flag=True, help="print the context the model would get")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: answer and sources")
def ask_cmd(question, db, image_path, llm_spec, k, image_weight, text_weight, no_generate, as_json):
    """Answer QUESTION from the collection's items, citing them as [n]."""
    from xmodal.apps.ask import ask_stream, build_prompt, gather_sources, source_line

    options = dict(k=k, image=image_path, image_weight=image_weight, text_weight=text_weight)
    with _open(db) as collection:
        if no_generate:
            sources = gather_sources(collection, question, **options)
            messages = build_prompt(question, sources)
            if as_json:
                click.echo(json.dumps({"messages": messages, "sources": _dicts(sources)}))
            else:
                for m in messages:
                    click.echo(f"--- {m['role']}\n{m['content']}")
            return
        from xmodal.llm import load_llm

        llm = load_llm(llm_spec)
        sources, pieces = ask_stream(collection, question, llm, **options)
        if as_json:
            text = "".join(pieces).strip()
            click.echo(json.dumps({"answer": text, "sources": _dicts(sources)}))
            return
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo("\n\nSources:")
        for s in sources:
            click.echo(f"  {source_line(s)}")


@click.command("describe")
@click.argument("images", nargs=-1, required=True)
@db_option
@model_option
@click.option("--llm", "llm_spec", default=None, help=LLM_HELP)
@click.option("--no-generate", is_flag=True, help="a template sentence, no language model")
@click.option("--no-ocr", is_flag=True, help="do not read printed text")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
def describe_cmd(images, db, model_name, llm_spec, no_generate, no_ocr, as_json):
    """Describe each IMAGE in one sentence (objects, scene, text on it, similar items)."""
    from xmodal.apps.describe import describe
    from xmodal.errors import ImageLoadError

    collection = _open(db) if db else None
    try:
        if collection is not None:
            encoder = collection.encoder
        else:
            from xmodal.config import get_settings
            from xmodal.models import load_model

            encoder = load_model(model_name or get_settings().model)
        llm = None
        if not no_generate:
            from xmodal.llm import load_llm

            llm = load_llm(llm_spec)
        failed = 0
        for path in images:
            try:
                d = describe(
                    path, encoder, collection=collection, ocr=False if no_ocr else None, llm=llm
                )
            except ImageLoadError as e:
                click.echo(f"skipping {e}", err=True)
                failed += 1
                continue
            if as_json:
                click.echo(json.dumps({"path": path, **d.to_dict()}))
            else:
                click.echo(f"{path}: {d.sentence}")
        if failed == len(images):
            raise click.ClickException("no image could be read")
    finally:
        if collection is not None:
            collection.close()


def _dicts(sources) -> list[dict]:
    from dataclasses import asdict

    return [asdict(s) for s in sources]
