"""`xmodal eval`: retrieval, zero-shot and embedding-quality metrics on an image-caption set."""

from __future__ import annotations

import json
from pathlib import Path

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


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _bias_table(document: dict) -> str:
    """One row per test and form, one column per model: "d=+1.23 (p=0.004)"; "-" where a form
    did not run for that model (no image side)."""
    from xmodal.evaluate.bias import result_rows

    models = document["models"]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for model, results in models.items():
        for name, form, figures in result_rows(results):
            cell = f"d={figures['effect_size']:+.2f} ({_p_text(figures['p_value'])})"
            cells.setdefault((name, form), {})[model] = cell
    test_width = max([4, *(len(name) for name, _ in cells)]) + 2
    width = max(20, *(len(name) + 2 for name in models))
    lines = [
        f"probe {document['probe']['name']} ({Path(document['probe']['source']).name}): "
        "WEAT effect size d, one-sided permutation p",
        "",
        f"{'TEST':<{test_width}}{'FORM':<7}" + "".join(f"{m:>{width}}" for m in models),
    ]
    for (name, form), by_model in cells.items():
        row = "".join(f"{by_model.get(m, '-'):>{width}}" for m in models)
        lines.append(f"{name:<{test_width}}{form:<7}{row}")
    return "\n".join(lines)


def _distinct_encoders(model_names, batch_size, device):
    """(name as given, encoder) per model, once each: two names of one model run it once."""
    seen: set[str] = set()
    for name in dict.fromkeys(model_names or [None]):
        encoder = load_encoder(name, batch_size, device)
        if encoder.name not in seen:
            seen.add(encoder.name)
            yield name, encoder


def _run_bias(probe_arg, model_names, report_dir, as_json, device, batch_size, permutations, seed):
    from xmodal.evaluate.bias import load_probe, plot_bias, run_probe

    probe = load_probe(probe_arg)
    document: dict = {
        "probe": {"name": probe.name, "source": probe.source, "description": probe.description},
        "models": {},
    }
    for name, encoder in _distinct_encoders(model_names, batch_size, device):
        results = run_probe(encoder, probe, permutations=permutations, seed=seed)
        results["model"] = name or encoder.name
        document["models"][results["model"]] = results
    first = next(iter(document["models"].values()))
    for test in first["tests"]:
        for form, figures in test["forms"].items():
            if "skipped" in figures:
                warn(f"{test['name']} ({form}): skipped: {figures['skipped']}")
    if report_dir:
        folder = Path(report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bias.json").write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
        plot_bias(document["models"], folder / "bias.png")
        warn(f"wrote bias.json, bias.png to {report_dir}")
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False))
    else:
        click.echo(_bias_table(document))


@click.command("eval")
@click.argument("pairs", required=False)
@click.option(
    "--model",
    "-m",
    "model_names",
    multiple=True,
    help=f"{MODEL_HELP}; repeat to compare models side by side",
)
@click.option(
    "--report",
    "report_dir",
    default=None,
    help="write metrics.json and PNG plots here (--bias: bias.json, bias.png)",
)
@click.option(
    "--template",
    "-t",
    "templates",
    multiple=True,
    help="zero-shot prompt template with {} (repeatable). Default: the model's own",
)
@click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object")
@click.option(
    "--bias",
    "bias_probe",
    default=None,
    metavar="PROBE",
    help="run a WEAT association probe (a TOML file, or 'default') instead of PAIRS",
)
@click.option(
    "--permutations",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="--bias: random re-partitions for a p-value when counting them all is too many",
)
@click.option("--seed", type=int, default=0, show_default=True, help="--bias: permutation seed")
@device_option()
@batch_option
def eval_cmd(
    pairs,
    model_names,
    report_dir,
    templates,
    as_json,
    bias_probe,
    permutations,
    seed,
    device,
    batch_size,
) -> None:
    """Evaluate models on the image-caption set PAIRS: retrieval recall@k both ways, zero-shot
    accuracy (label folders), embedding quality and a suggested search threshold.

    PAIRS is a CSV or JSONL file (image and caption columns; relative paths from its folder),
    a folder of images with same-name .txt captions, or a folder of label folders.

    With --bias PROBE (no PAIRS): WEAT effect sizes and permutation p-values of the probe's
    tests, on words and, where the probe gives images and the model embeds them, on images;
    --report DIR writes bias.json and bias.png.
    """
    if bias_probe is not None:
        if pairs is not None:
            raise click.UsageError("give PAIRS or --bias PROBE, not both")
        if templates:
            raise click.UsageError("--template applies to PAIRS, not to --bias")
        _run_bias(
            bias_probe, model_names, report_dir, as_json, device, batch_size, permutations, seed
        )
        return
    if pairs is None:
        raise click.UsageError("give PAIRS (an image-caption set) or --bias PROBE")
    from xmodal.evaluate import dataset_summary, embed_pairs, evaluate_embedded, write_report
    from xmodal.pairs import load_pairs

    pairset = load_pairs(pairs)
    warn_skipped(pairset.skipped)
    document: dict = {"dataset": dataset_summary(pairset), "models": {}}
    embedded = []
    for name, encoder in _distinct_encoders(model_names, batch_size, device):
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
