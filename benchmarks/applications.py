"""The applications on the shared space, measured in one run: hybrid vs vector recall, OCR and
moderation throughput, and the local LLM's load time and speed.

    python benchmarks/applications.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/applications.py --only hybrid   # one part: hybrid, ocr, moderation, llm
    python benchmarks/applications.py --cap 200       # fewer images per set

Hybrid vs vector: emoji and clip-art test images are copied under numbered names (so a file
name gives nothing away) and every other one gets a sidecar caption. Each image's caption is
then a query; recall@1 and @10 are counted separately for captioned and uncaptioned targets, so
the table shows both what hybrid search adds where text exists and what it costs where it does
not (an image counts as found when any image with the same caption is). The baseline is vector
search on the same collection in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import eval_sets
from index_search import machine
from xmodal.engine.collection import Collection
from xmodal.models import load_model

PARTS = ("hybrid", "ocr", "moderation", "llm")


def hybrid_vs_vector(encoder, name: str, items, folder: Path) -> list[str]:
    lib = folder / f"{name}-lib"
    lib.mkdir(parents=True)
    captions = {}
    for i, item in enumerate(items):
        target = lib / f"{i:05d}{item.path.suffix}"
        shutil.copy(item.path, target)
        if i % 2 == 0:
            (lib / f"{i:05d}.txt").write_text(item.caption, encoding="utf-8")
        captions[target.name] = item.caption
    with Collection.open(folder / f"{name}-db", encoder) as collection:
        started = time.perf_counter()
        collection.index([lib])
        seconds = time.perf_counter() - started
        queries = sorted(set(captions.values()))
        vectors = encoder.embed_texts(queries)
        found = {mode: {True: [0, 0, 0], False: [0, 0, 0]} for mode in ("vector", "hybrid")}
        latency = {"vector": [], "hybrid": []}
        for query, vector in zip(queries, vectors):
            wanted = {n for n, c in captions.items() if c == query}
            captioned = any(int(n[:5]) % 2 == 0 for n in wanted)
            for mode in ("vector", "hybrid"):
                t = time.perf_counter()
                hits = collection.search(query, 10, mode=mode, vector=vector)
                latency[mode].append(time.perf_counter() - t)
                ranked = [Path(h.path).name for h in hits]
                tally = found[mode][captioned]
                tally[0] += 1
                tally[1] += bool(ranked[:1] and ranked[0] in wanted)
                tally[2] += bool(wanted & set(ranked))
    lines = [
        f"{name}: {len(items)} images ({len(items) // 2 + len(items) % 2} captioned), "
        f"{len(queries)} caption queries, indexed in {seconds:.1f} s"
    ]
    lines.append(f"  {'mode':<8} {'target':<12} {'n':>5} {'R@1':>7} {'R@10':>7}")
    for mode in ("vector", "hybrid"):
        for captioned in (True, False):
            n, r1, r10 = found[mode][captioned]
            label = "captioned" if captioned else "uncaptioned"
            lines.append(f"  {mode:<8} {label:<12} {n:>5} {r1 / n:>7.1%} {r10 / n:>7.1%}")
    v, h = (np.median(latency[m]) * 1000 for m in ("vector", "hybrid"))
    lines.append(f"  median query: vector {v:.2f} ms, hybrid {h:.2f} ms ({h / v:.1f}x)")
    return lines


def run_hybrid(encoder, cap: int, folder: Path) -> None:
    sets = eval_sets(cap=cap)
    print("\n## hybrid vs vector recall (queries: each image's caption)")
    for name in ("emoji", "clipart"):
        for line in hybrid_vs_vector(encoder, name, sets[name], folder):
            print(line)


def signs(folder: Path, n: int) -> list[Path]:
    """Rendered signs with words on them (the OCR test's kind of image), some turned."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(
        str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans-Bold.ttf"), 64
    )
    words = Path("/usr/share/dict/words").read_text().split()[::997]
    out = []
    for i in range(n):
        image = Image.new("RGB", (1000, 360), (240, 236, 220))
        text = " ".join(words[(3 * i + j) % len(words)] for j in range(3)).upper()
        ImageDraw.Draw(image).text((30, 140), text, font=font, fill=(25, 25, 35))
        if i % 4 == 3:
            image = image.rotate(90, expand=True)
        path = folder / f"sign{i:03d}.png"
        image.save(path)
        out.append(path)
    return out


def run_ocr(folder: Path) -> None:
    from xmodal.images import load_image
    from xmodal.ocr import OcrReader
    from xmodal.samples import clipart_images, sample_photos

    sets = {
        "signs (3 words, 1 in 4 turned)": signs(folder, 20),
        "sample photos": [p.path for p in sample_photos(folder / "photos")],
        "clip art": [c.path for c in clipart_images("test")[::60][:20]],
    }
    reader = OcrReader()
    started = time.perf_counter()
    reader.read(load_image(sets["sample photos"][0]))
    first = time.perf_counter() - started
    print(f"\n## OCR (rapidocr PP-OCRv4), one image at a time\nfirst call {first:.1f} s")
    for name, paths in sets.items():
        images = [load_image(p, min_side=1600) for p in paths]
        started = time.perf_counter()
        found = sum(bool(reader.read(im).text) for im in images)
        seconds = time.perf_counter() - started
        print(
            f"  {name:<32} {len(images):>3} images  {len(images) / seconds:5.2f} images/s"
            f"  {seconds / len(images) * 1000:6.0f} ms/image  text found on {found}"
        )


def run_moderation(encoder, folder: Path) -> None:
    from xmodal.images import load_image
    from xmodal.moderation import Moderator
    from xmodal.samples import clipart_images

    paths = [c.path for c in clipart_images("test")[::8][:100]]
    images = [load_image(p, min_side=256) for p in paths]
    started = time.perf_counter()
    moderator = Moderator(encoder)
    print(
        f"\n## moderation (zero-shot categories + open_nsfw)\nset-up (prompts embedded, "
        f"open_nsfw loaded) {time.perf_counter() - started:.1f} s"
    )
    moderator.moderate(images[:4])  # warm
    started = time.perf_counter()
    verdicts = moderator.moderate(images)
    seconds = time.perf_counter() - started
    print(
        f"  {len(images)} clip-art images: {len(images) / seconds:.1f} images/s end to end "
        f"(embed + open_nsfw + categories), {sum(not v.safe for v in verdicts)} flagged"
    )
    vectors = encoder.embed_images(images)
    started = time.perf_counter()
    moderator.judge(vectors, images)
    seconds = time.perf_counter() - started
    print(f"  from stored vectors: {len(images) / seconds:.1f} images/s (open_nsfw + categories)")
    started = time.perf_counter()
    moderator.judge(vectors)
    seconds = time.perf_counter() - started
    print(f"  categories alone: {len(images) / seconds:,.0f} images/s")
    from xmodal.moderation.evaluation import evaluate_policy
    from xmodal.samples import moderation_samples, sample_photos

    report = evaluate_policy(moderator, moderation_samples(folder / "labelled"))
    print("  default categories on labelled clip art (xmodal.samples.moderation_samples):")
    print("    " + report.table().replace("\n", "\n    "))
    photos = sample_photos(folder / "photos")
    flagged = [
        f"{p.name} ({', '.join(v.flagged)})"
        for p, v in zip(photos, moderator.moderate([p.path for p in photos]))
        if not v.safe
    ]
    print(f"  sample photos flagged: {len(flagged)} of {len(photos)} {', '.join(flagged)}")


def run_llm(encoder, folder: Path) -> None:
    import os
    import re

    import torch

    from xmodal.apps.describe import describe
    from xmodal.llm.local import _load, load_local
    from xmodal.samples import sample_photos

    print("\n## local language model (packaged SmolLM2-135M-Instruct Q4_1 GGUF, transformers)")
    os.environ["XMODAL_CACHE"] = str(folder / "cache")  # a cold start: nothing converted yet
    for label in ("first load (GGUF converted, kept)", "later load (the kept form)"):
        _load.cache_clear()
        started = time.perf_counter()
        model = load_local(None)
        print(f"  {label}: {time.perf_counter() - started:.1f} s")
    messages = [{"role": "user", "content": "Write a short paragraph about lighthouses."}]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        started, first, out = time.perf_counter(), None, ""
        for piece in model.generate(messages, max_tokens=64):
            first = first or time.perf_counter() - started
            out += piece
        seconds = time.perf_counter() - started
        tokens = len(model.tokenizer(out)["input_ids"])
        print(
            f"  {threads} thread(s): {tokens} tokens in {seconds:.1f} s = "
            f"{tokens / seconds:.1f} tokens/s, first text after {first:.2f} s"
        )

    def names_it(label: str, sentence: str) -> bool:
        words = [w for w in label.split() if w not in {"a", "of", "with", "in", "the"}]
        return any(re.search(rf"\b{w}s?\b", sentence.lower()) for w in words or [label])

    photos = sample_photos(folder / "photos")
    print("  describe on the 14 sample photos (the sentence names the photo's label):")
    for name, llm in (("template", None), ("SmolLM2", model)):
        started = time.perf_counter()
        sentences = [describe(p.path, encoder, ocr=False, llm=llm).sentence for p in photos]
        right = sum(names_it(p.label, s) for p, s in zip(photos, sentences))
        print(f"    {name:<9} {right}/14 in {time.perf_counter() - started:.0f} s")
        for p, s in zip(photos, sentences):
            print(f"      {'ok' if names_it(p.label, s) else '--'} {p.label:<18} {s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--cap", type=int, default=500, help="images per set at most")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    print(f"machine: {machine()}")
    encoder = load_model("lite")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "hybrid" in parts:
            run_hybrid(encoder, args.cap, folder)
        if "ocr" in parts:
            run_ocr(folder)
        if "moderation" in parts:
            run_moderation(encoder, folder)
        if "llm" in parts:
            run_llm(encoder, folder)


if __name__ == "__main__":
    main()
