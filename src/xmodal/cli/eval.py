"""`xmodal eval`: retrieval, zero-shot and embedding-quality metrics on an image-caption set."""

from __future__ import annotations

import json

import click

from xmodal.cli.common import (
    MODEL_HELP,
    batch_option,
    device_option,
    load_encoder,
    warn,
    warn_skipped,
)

# (row name, path into one model's metrics, format: "%" = percentage, else a format spec)
_EVAL_ROWS = [
    *(
        (f"{arrow} recall@{k}", ("retrieval", direction, f"recall@{k}"), "%")
        for direction, arrow in (("text_to_image", "text→image"), ("image_to_text", "image→text"))
        for k in (1, 5, 10)
    ),
    ("text→image mean rank", ("retrieval", "text_to_image", "mean_rank"), ".2f"),
    ("image→text mean rank", ("retrieval", "image_to_text", "mean_rank"), ".2f"),
    ("zero-shot top-1", ("zero_shot", "top1_accuracy"), "%"),
    ("zero-shot top-5", ("zero_shot", "top5_accuracy"), "%"),
    ("zero-shot mean class recall", ("zero_shot", "mean_per_class_recall"), "%"),
    ("alignment (lower is better)", ("quality", "alignment"), ".4f"),
    ("uniformity image", ("quality", "uniformity_image"), ".4f"),
    ("uniformity text", ("quality", "uniformity_text"), ".4f"),
    ("mean distance image", ("quality", "mean_distance_image"), ".4f"),
    ("mean distance text", ("quality", "mean_distance_text"), ".4f"),
    ("k-means silhouette image", ("quality", "silhouette_image"), ".4f"),
    ("k-means silhouette text", ("quality", "silhouette_text"), ".4f"),
    ("label silhouette image", ("quality", "label_silhouette_image"), ".4f"),
    ("matched cosine", ("quality", "similarity", "matched_mean"), ".4f"),
    ("unmatched cosine", ("quality", "similarity", "unmatched_mean"), ".4f"),
    ("cosine gap", ("quality", "similarity", "gap"), ".4f"),
    ("suggested threshold", ("quality", "suggested_threshold", "threshold"), ".4f"),
    ("  precision at threshold", ("quality", "suggested_threshold", "precision"), "%"),
    ("  recall at threshold", ("quality", "suggested_threshold", "recall"), "%"),
]


def _eval_table(document: dict) -> str:
    """One column per model, one row per metric; rows no model has (zero-shot on captions) go."""
    models = document["models"]

    def cell(metrics: dict, path: tuple[str, ...], fmt: str) -> str | None:
        value = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
        return f"{value:.1%}" if fmt == "%" else format(value, fmt)

    d = document["dataset"]
    lines = [
        f"{d['source']} ({d['kind']}): {d['pairs']} pairs, {d['images']} images, "
        f"{d['captions']} captions, {d['skipped']} skipped",
        "",
    ]
    width = max(12, *(len(name) + 2 for name in models))
    lines.append(f"{'METRIC':<28}" + "".join(f"{name:>{width}}" for name in models))
    for label, path, fmt in _EVAL_ROWS:
        cells = [cell(m, path, fmt) for m in models.values()]
        if any(c is not None for c in cells):
            lines.append(f"{label:<28}" + "".join(f"{c or '-':>{width}}" for c in cells))
    return "\n".join(lines)


@click.command("eval")
@click.argument("pairs")
@click.option(
    "--model",
    "-m",
    "model_names",
    multiple=True,
    help=f"{MODEL_HELP}; repeat to compare models side by side",
)
@click.option("--report", "report_dir", default=None, help="write metrics.json and PNG plots here")
@click.option(
    "--template",
    "-t",
    "templates",
    multiple=True,
    help="zero-shot prompt template with {} (repeatable). Default: the model's own",
)
@click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object")
@device_option()
@batch_option
def eval_cmd(pairs, model_names, report_dir, templates, as_json, device, batch_size) -> None:
    """Evaluate models on the image-caption set PAIRS: retrieval recall@k both ways, zero-shot
    accuracy (label folders), embedding quality and a suggested search threshold.

    PAIRS is a CSV or JSONL file (image and caption columns; relative paths from its folder),
    a folder of images with same-name .txt captions, or a folder of label folders.
    """
    from xmodal.evaluate import dataset_summary, embed_pairs, evaluate_embedded, write_report
    from xmodal.pairs import load_pairs

    pairset = load_pairs(pairs)
    warn_skipped(pairset.skipped)
    document: dict = {"dataset": dataset_summary(pairset), "models": {}}
    embedded = []
    seen: set[str] = set()
    for name in dict.fromkeys(model_names or [None]):
        encoder = load_encoder(name, batch_size, device)
        if encoder.name in seen:
            continue
        seen.add(encoder.name)
        emb = embed_pairs(encoder, pairset, progress=True)
        # Tables and plots show a model as the user named it (a trained folder's full path
        # is the encoder's name, too long for a legend).
        emb.model = name or encoder.name
        if not embedded:  # the same files fail for every model: say it once
            for ref, reason in emb.skipped:
                warn(f"skipping {ref}: {reason}")
        document["models"][emb.model] = evaluate_embedded(encoder, emb, templates=templates or None)
        embedded.append(emb)
    if report_dir:
        written = write_report(report_dir, document, embedded)
        warn(f"wrote {', '.join(p.name for p in written)} to {report_dir}")
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False))
    else:
        click.echo(_eval_table(document))
