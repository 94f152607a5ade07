"""End to end as a user runs it: `xmodal train` on real emoji pairs -> `xmodal eval` compares it
with its base -> `xmodal index --model DIR` on real images -> `xmodal search` finds the picture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.pairs import load_pairs
from xmodal.samples import emoji_images

pytestmark = pytest.mark.slow

EVERY = 5  # a fifth of the emoji: ~280 pairs
# Trained pictures indexed for the search step, each to be found by its own caption.
QUERIES = ("cat face", "rocket", "hot beverage")


def xmodal(*args) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "xmodal", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_train_eval_index_search(tmp_path):
    items = emoji_images(tmp_path / "png")
    by_caption = {item.caption: item for item in items}
    chosen = items[::EVERY] + [by_caption[q] for q in QUERIES]
    pairs = tmp_path / "pairs.csv"
    lines = ["image,caption"] + [f"{i.path},{i.caption}" for i in dict.fromkeys(chosen)]
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "emoji-model"

    trained = xmodal(
        "train", pairs, "--model", "lite-en", "--out", out, "--epochs", 20, "--patience", 20
    ).stdout
    assert "epoch 20/20" in trained and "validation text→image recall@1/5/10" in trained
    assert f"xmodal index PHOTOS --model {out}" in trained
    assert (out / "MODEL_CARD.md").is_file() and (out / "xmodal-model.json").is_file()

    report = json.loads(
        xmodal("eval", pairs, "--model", "lite-en", "--model", out, "--json").stdout
    )
    base, ours = (report["models"][name]["retrieval"] for name in ("lite-en", str(out)))
    for k in (1, 5, 10):  # most of these pairs were trained on: clearly better than the base
        assert ours["text_to_image"][f"recall@{k}"] > base["text_to_image"][f"recall@{k}"]

    # A library of 40 emoji the model never saw, plus the pictures of QUERIES it trained on.
    train_set, _ = load_pairs(pairs).split(0.2, 0)
    trained_on = {p.caption for p in train_set.pairs}
    shown = [by_caption[q] for q in QUERIES if q in trained_on]
    assert shown
    library = tmp_path / "library"
    library.mkdir()
    unseen = [i for i in items[1::EVERY] if i.caption not in QUERIES][:40]
    for item in shown + unseen:
        shutil.copy(item.path, library / item.path.name)
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(i.caption for i in shown + unseen) + "\n", encoding="utf-8")

    top3 = {}
    for model in ("lite-en", out):
        db = tmp_path / f"db-{Path(model).name}"
        indexed = xmodal("index", library, "--model", model, "--db", db).stdout
        assert f"added {len(shown) + len(unseen)}," in indexed
        lines = xmodal("search", "--queries", queries, "--db", db, "--json", "-k", 3).stdout
        top3[model] = {
            r["query"]: [Path(h["path"]).name for h in r["results"]]
            for r in map(json.loads, lines.splitlines())
        }
    for item in shown:  # trained pairs: found by their own caption
        assert item.path.name in top3[out][item.caption], (item.caption, top3[out][item.caption])

    def hit_rate(model) -> float:
        return sum(i.path.name in top3[model][i.caption] for i in unseen) / len(unseen)

    # On pictures and captions it never saw, the trained model finds more in its top 3.
    assert hit_rate(out) > hit_rate("lite-en") + 0.05, (hit_rate(out), hit_rate("lite-en"))
