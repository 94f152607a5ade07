"""Zero-shot table on the 14 sample photos for one model (default: lite).

    python benchmarks/zeroshot_photos.py [MODEL]

Labels: the 14 photo labels + the distractors; each label is the renormalised mean of its
prompt templates (lite.TEMPLATES), as `xmodal classify` does. Prints photo, expected, predicted,
probability (softmax of logit_scale * cosine), hit; then the total.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import OUT, ensemble, photo_labels
from xmodal.models import load_model
from xmodal.models.lite import TEMPLATES
from xmodal.samples import sample_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", nargs="?", default="lite")
    args = ap.parse_args()
    model = load_model(args.model)
    photos = sample_photos(OUT / "photos")
    labels = photo_labels(photos)
    logits = (
        model.logit_scale
        * model.embed_images([p.path for p in photos])
        @ ensemble(model.embed_texts, labels, TEMPLATES).T
    )
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    print(f"{'photo':18} {'expected':18} {'predicted':18} {'prob':>5}  hit")
    hits = 0
    for p, row in zip(photos, probs):
        best = int(row.argmax())
        hit = labels[best] == p.label
        hits += hit
        print(
            f"{p.name:18} {p.label:18} {labels[best]:18} {row[best]:5.2f}  {'yes' if hit else '-'}"
        )
    print(f"total {hits}/{len(photos)} ({model.name}, {len(TEMPLATES)} templates)")


if __name__ == "__main__":
    main()
