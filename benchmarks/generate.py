"""Text-guided generation judged by a held-out model: 20 everyday prompts, two drawers, and the
drawers' starting images as the no-optimisation baseline.

    python benchmarks/generate.py [--steps 150] [--size 160] [--prompts 20] [--threads 2]

Each prompt is drawn by `xmodal.generate.generate` with lite (EfficientNet-Lite0 + MiniLM + e5)
and judged by HeldOutJudge (EfficientNet-Lite2 + MiniLM), which ranks the prompt among the
other benchmark prompts and 200 everyday-object distractors (1 = its best match). The judge
never saw the optimisation, so a drawing that only fools Lite0 ranks no better than the
baseline. Prints, per drawer: the judge's mean and median rank and the share in the top 10,
the generator's own similarity start -> end, and seconds per image on --threads cores.

Writes benchmarks/out/generate/grid.png (every prompt: pixels | strokes, with the judge's
ranks), docs/generate-grid.jpg (a copy under 150 KB for the README) and results.json. Each
image is kept under out/generate/runs/SETTINGS/ as it is made, so a run that is stopped
resumes where it was.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from xmodal.generate import GenerateOptions, generate
from xmodal.generate.judge import HeldOutJudge, default_distractors
from xmodal.models import load_model

OUT = Path(__file__).parent / "out" / "generate"
DOCS_GRID = Path(__file__).parent.parent / "docs" / "generate-grid.jpg"
DOCS_MAX_BYTES = 150_000

# (prompt, whether ImageNet's 1000 classes hold the thing): the generator and the judge both
# see through ImageNet classifiers, so an "out" prompt is reached only through the classes its
# sentence lies near (a giraffe near the zebra and the camel, a carrot near the vegetables).
PROMPTS: tuple[tuple[str, bool], ...] = (
    ("a lighthouse", True),  # beacon, lighthouse
    ("a teapot", True),
    ("a banana", True),
    ("a giraffe", False),
    ("a pineapple", True),
    ("a carrot", False),
    ("a strawberry", True),
    ("a sunflower", False),
    ("an umbrella", True),
    ("a tomato", False),
    ("a school bus", True),
    ("a watermelon", False),
    ("a goldfish", True),
    ("a dolphin", False),
    ("a violin", True),
    ("a pear", False),
    ("a pizza", True),
    ("a birthday cake", False),
    ("a volcano", True),
    ("a zebra", True),
)
DRAWERS = ("pixels", "strokes")


def run_one(model, prompt: str, drawer: str, seed: int, args, folder: Path) -> dict:
    """Generate one image (or reuse the one a stopped run kept); returns its record."""
    stem = folder / f"{drawer}-{seed:02d}"
    record_path = stem.with_suffix(".json")
    if record_path.exists():
        return json.loads(record_path.read_text())
    options = GenerateOptions(
        drawer=drawer,
        steps=args.steps,
        size=args.size,
        seed=seed,
        cutouts=args.cutouts,
        save_every=args.steps,  # frames = [start, end]: the start is the baseline
        device=args.device,
    )
    started = time.perf_counter()
    result = generate(prompt, model, options)
    seconds = time.perf_counter() - started
    result.image.save(stem.with_suffix(".png"))
    result.frames[0].save(folder / f"{drawer}-{seed:02d}-start.png")
    record = {
        "prompt": prompt,
        "drawer": drawer,
        "seed": seed,
        "seconds": seconds,
        "start_similarity": result.start_similarity,
        "similarity": result.similarity,
    }
    record_path.write_text(json.dumps(record))
    return record


def summary(ranks: list[int]) -> dict:
    return {
        "mean_rank": statistics.fmean(ranks),
        "median_rank": statistics.median(ranks),
        "top10": sum(r <= 10 for r in ranks) / len(ranks),
    }


def font(size: int):
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default(size)


def grid(tiles: list[tuple[str, Image.Image, Image.Image]], header: str, columns: int = 5):
    """A header line, then tiles: a caption over the pixels and strokes images side by side."""
    columns = min(columns, len(tiles))
    side = tiles[0][1].width
    caption_h, header_h = 36, 26
    tile_w, tile_h = 2 * side + 6, side + caption_h
    rows = -(-len(tiles) // columns)
    width = max(columns * (tile_w + 10) + 10, 8 * len(header))
    sheet = Image.new("RGB", (width, header_h + rows * (tile_h + 10) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    small = font(13)
    draw.text((10, 8), header, fill="black", font=small)
    for i, (caption, left, right) in enumerate(tiles):
        x = 10 + (i % columns) * (tile_w + 10)
        y = header_h + 10 + (i // columns) * (tile_h + 10)
        for line, text in enumerate(caption.split("\n")):
            draw.text((x, y + 2 + 16 * line), text, fill="black", font=small)
        sheet.paste(left, (x, y + caption_h))
        sheet.paste(right, (x + side + 6, y + caption_h))
    return sheet


def small_jpeg(image: Image.Image, max_bytes: int) -> bytes:
    """The largest, best JPEG of `image` (at most 1200 px wide) under max_bytes."""
    width = min(image.width, 1200)
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        for quality in (85, 75, 65, 55):
            buffer = io.BytesIO()
            scaled.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        width = int(width * 0.8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="the first N prompts")
    ap.add_argument("--cutouts", type=int, default=16, help="augmented views per step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="lite", help="the generator's encoder")
    ap.add_argument("--device", default="cpu", help="the generator's device (timings: cpu)")
    ap.add_argument("--distractors", type=int, default=200)
    args = ap.parse_args()
    if not 1 <= args.prompts <= len(PROMPTS):
        ap.error(f"--prompts must be 1..{len(PROMPTS)}")
    torch.set_num_threads(args.threads)
    prompts = PROMPTS[: args.prompts]
    texts = [p for p, _ in prompts]

    model = load_model(args.model, device=args.device, num_threads=args.threads)
    judge = HeldOutJudge(generator=model, num_threads=args.threads)
    # Every prompt competes with the others and with distractors sharing no word with any.
    candidates = texts + default_distractors(args.distractors, exclude=[p for p, _ in PROMPTS])
    settings = f"{args.model}-s{args.steps}-z{args.size}-c{args.cutouts}-{args.device}"
    folder = OUT / "runs" / settings.replace(":", "_").replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)

    records = {d: [] for d in DRAWERS}
    for seed, prompt in enumerate(texts):
        for drawer in DRAWERS:
            record = run_one(model, prompt, drawer, seed, args, folder)
            records[drawer].append(record)
            print(
                f"{drawer:8} {prompt:18} own {record['start_similarity']:.3f} -> "
                f"{record['similarity']:.3f}  {record['seconds']:.1f} s",
                flush=True,
            )

    def images(drawer: str, suffix: str = "") -> list[Image.Image]:
        paths = [folder / f"{drawer}-{seed:02d}{suffix}.png" for seed in range(len(texts))]
        return [Image.open(p).convert("RGB") for p in paths]

    ranks = {d: judge.ranks(images(d), texts, candidates) for d in DRAWERS}
    for d in DRAWERS:
        ranks[f"baseline ({d} start)"] = judge.ranks(images(d, "-start"), texts, candidates)

    n_candidates = len(dict.fromkeys(candidates))
    print(
        f"\n{len(texts)} prompts, judge {judge.name} ranking each among {n_candidates}; "
        f"generator {model.name}, {args.steps} steps, {args.size} px, {args.cutouts} views/step, "
        f"{args.threads} threads on {args.device}"
    )
    print(f"{'':24} {'mean':>6} {'median':>6} {'top10':>6}  {'own sim start -> end':>21}  s/img")
    table = {}
    for mode, mode_ranks in ranks.items():
        drawer = mode if mode in DRAWERS else mode.split("(")[1].split()[0]
        recs = records[drawer]
        start = statistics.fmean(r["start_similarity"] for r in recs)
        end = statistics.fmean(r["similarity"] for r in recs)
        baseline = mode not in DRAWERS
        row = summary(mode_ranks) | {"ranks": mode_ranks, "own_start": start}
        if not baseline:
            seconds = statistics.fmean(r["seconds"] for r in recs)
            row |= {"own_end": end, "seconds_per_image": seconds}
        table[mode] = row
        own = f"{start:.3f}" if baseline else f"{start:.3f} -> {end:.3f}"
        secs = "" if baseline else f"{row['seconds_per_image']:.1f}"
        print(
            f"{mode:24} {row['mean_rank']:6.1f} {row['median_rank']:6.1f} {row['top10']:6.0%}  "
            f"{own:>21}  {secs}"
        )

    for split, flag in (("in ImageNet", True), ("not in ImageNet", False)):
        chosen = [i for i, (_, inside) in enumerate(prompts) if inside == flag]
        if chosen:
            means = {m: statistics.fmean(ranks[m][i] for i in chosen) for m in ranks}
            shown = ", ".join(f"{m} {v:.1f}" for m, v in means.items())
            print(f"mean rank, {len(chosen)} prompts {split}: {shown}")

    tiles = [
        (
            f"{p}{'' if inside else ' *'}\nrank {ranks['pixels'][i]} | {ranks['strokes'][i]}",
            left,
            right,
        )
        for i, ((p, inside), left, right) in enumerate(
            zip(prompts, images("pixels"), images("strokes"))
        )
    ]
    header = (
        f"left: pixels, right: strokes ({args.steps} steps, {model.name}); rank of the prompt "
        f"among {n_candidates} by the held-out judge ({judge.name}); * not an ImageNet class"
    )
    sheet = grid(tiles, header)
    sheet.save(OUT / "grid.png")
    DOCS_GRID.parent.mkdir(exist_ok=True)
    DOCS_GRID.write_bytes(small_jpeg(sheet, DOCS_MAX_BYTES))
    results = {
        "settings": vars(args),
        "judge": judge.name,
        "generator": model.name,
        "candidates": n_candidates,
        "prompts": [{"prompt": p, "in_imagenet": inside} for p, inside in prompts],
        "modes": table,
        "records": records,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(
        f"\ngrid: {OUT / 'grid.png'} (left pixels, right strokes; * = not an ImageNet class), "
        f"{DOCS_GRID} ({DOCS_GRID.stat().st_size // 1000} KB)"
    )


if __name__ == "__main__":
    main()
