"""An evaluation report on disk: metrics.json and PNG plots, several models side by side.

- recall_at_k.png: recall@k curves, text->image and image->text, one line per model;
- similarity_histograms.png: cosine of matched vs unmatched pairs with the suggested threshold;
- embedding_map.png: images and texts projected to 2-D (PCA), marker = modality, colour = class
  (label trees) or modality (captioned sets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmodal.errors import MissingExtraError
from xmodal.evaluate.embed import EmbeddedPairs
from xmodal.evaluate.quality import similarity_samples

# Points per modality drawn on the map: more only blurs it.
MAP_POINTS = 1500
# Classes named in the map's legend; beyond this the colours speak for themselves.
LEGEND_CLASSES = 12


def write_report(
    folder: str | Path, document: dict, embedded: Sequence[EmbeddedPairs]
) -> list[Path]:
    """Write metrics.json (`document`: {"dataset": ..., "models": {name: metrics}}) and the plots
    for `embedded` (one per model, in the order of document["models"]); returns the paths."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError("xmodal eval --report", "train", "matplotlib") from e
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = list(document["models"].values())
    written = [folder / "metrics.json"]
    written[0].write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    for name, draw in (
        ("recall_at_k.png", lambda fig: _recall_curves(fig, metrics)),
        ("similarity_histograms.png", lambda fig: _histograms(fig, metrics, embedded)),
        ("embedding_map.png", lambda fig: _maps(fig, embedded)),
    ):
        fig = Figure(figsize=(11, 4.5), layout="constrained")
        draw(fig)
        fig.savefig(folder / name, dpi=100)
        written.append(folder / name)
    return written


def _grid(fig, n: int):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig.set_size_inches(5.5 * cols, 4.2 * rows)
    return fig.subplots(rows, cols, squeeze=False).ravel()[:n]


def _recall_curves(fig, metrics: list[dict]) -> None:
    axes = fig.subplots(1, 2, sharey=True)
    for ax, direction, title in zip(
        axes, ("text_to_image", "image_to_text"), ("text → image", "image → text")
    ):
        for m in metrics:
            curve = m["retrieval"]["curve"]
            ax.plot(curve["k"], curve[direction], marker="o", label=m["model"])
        ax.set(xscale="log", xlabel="k", title=title, ylim=(0, 1.02))
        ks = metrics[0]["retrieval"]["curve"]["k"]
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("recall@k")
    axes[0].legend()


def _histograms(fig, metrics: list[dict], embedded: Sequence[EmbeddedPairs]) -> None:
    for ax, m, emb in zip(_grid(fig, len(embedded)), metrics, embedded):
        matched, unmatched, _ = similarity_samples(emb.image_vecs, emb.text_vecs, emb.relevant)
        scores = np.concatenate([matched, unmatched])
        lo, hi = float(scores.min()), float(scores.max())
        bins = np.linspace(lo, max(hi, lo + 1e-3), 40)
        if len(unmatched):
            ax.hist(unmatched, bins=bins, density=True, alpha=0.55, label="unmatched")
        ax.hist(matched, bins=bins, density=True, alpha=0.55, label="matched")
        suggested = m["quality"]["suggested_threshold"]
        for key, style, name in (
            ("threshold", "--", "max F1"),
            ("youden_threshold", ":", "Youden"),
        ):
            if suggested[key] is not None:
                ax.axvline(
                    suggested[key], color="black", ls=style, label=f"{name} {suggested[key]:.3f}"
                )
        ax.set(title=m["model"], xlabel="cosine similarity", ylabel="density")
        ax.legend()


def _project(vectors: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, 2] on the two principal axes (zeros where there are fewer)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(vectors), 2))
    out[:, : min(2, len(vt))] = centred @ vt[:2].T
    return out


def _maps(fig, embedded: Sequence[EmbeddedPairs]) -> None:
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    palette = colormaps["tab20"]
    for ax, emb in zip(_grid(fig, len(embedded)), embedded):
        rng = np.random.default_rng(0)
        pick_i = np.sort(rng.permutation(len(emb.images))[:MAP_POINTS])
        pick_t = np.sort(rng.permutation(len(emb.texts))[:MAP_POINTS])
        xy = _project(np.concatenate([emb.image_vecs[pick_i], emb.text_vecs[pick_t]]))
        xy_i, xy_t = xy[: len(pick_i)], xy[len(pick_i) :]
        if emb.labels:
            colour = {label: palette(i % palette.N) for i, label in enumerate(emb.labels)}
            image_colours = [colour[emb.image_labels[i]] for i in pick_i]
            text_colours = [colour.get(emb.texts[i], "grey") for i in pick_t]
            legend = [("o", "grey", "image"), ("^", "grey", "text")]
            legend += [("s", colour[label], label) for label in emb.labels[:LEGEND_CLASSES]]
        else:
            image_colours, text_colours = "C0", "C1"
            legend = [("o", "C0", "image"), ("^", "C1", "text")]
        handles = [Line2D([], [], ls="", marker=m, color=c, label=t) for m, c, t in legend]
        ax.scatter(xy_i[:, 0], xy_i[:, 1], c=image_colours, marker="o", s=18, alpha=0.7)
        ax.scatter(xy_t[:, 0], xy_t[:, 1], c=text_colours, marker="^", s=40, alpha=0.9)
        ax.set(title=f"{emb.model} (PCA)", xticks=[], yticks=[])
        ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
