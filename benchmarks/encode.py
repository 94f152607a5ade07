"""Encoding speed against this machine's limits: torch eager, ONNX fp32, ONNX int8 and torch
dynamic int8, for lite and an OpenCLIP ViT-B-32 with random weights (the real one's compute).

    python benchmarks/encode.py [--models lite,vit] [--seconds 3] [--exports DIR]

One run, the same inputs for every variant: real images (openclip-png clip art and the sample
photos), prepared once per model so the figures are the model's alone, and clip-art captions.
Each variant runs in a fresh process (so its peak memory is its own) at batch 1, 8 and 32, and
reports images/s, texts/s, peak RSS and the cosine of its vectors to torch eager's. A matmul
microbenchmark (torch and numpy, fp32, large square products) gives the GFLOP/s this machine
can reach; ViT-B-32's encoding rate times its FLOPs per image is printed as a share of it.
Exports are made with `xmodal export onnx` once and kept in --exports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"lite": "lite", "vit": "openclip:ViT-B-32/random"}
# Random ViT-B-32 weights saved once with a fixed seed, so that every process (and the exports)
# load the same ones: `openclip:ViT-B-32/random` draws new weights in each.
VIT_WEIGHTS = "vit-b-32-random-seed0.safetensors"
VARIANTS = ("torch", "torch-int8", "onnx-fp32", "onnx-int8")
BATCHES = (1, 8, 32)
N_IMAGES = 64
N_TEXTS = 64


def vit_b32_flops() -> float:
    """FLOPs (2 x multiply-adds) of one ViT-B/32 image at 224 px: 49 patches + 1 class token."""
    tokens, width, layers, mlp = 50, 768, 12, 3072
    patch = 49 * 3 * 32 * 32 * width
    per_layer = tokens * width * 3 * width  # q, k, v
    per_layer += 2 * 12 * tokens * tokens * (width // 12)  # scores and weighted values
    per_layer += tokens * width * width + 2 * tokens * width * mlp  # out proj, MLP
    return 2.0 * (patch + layers * per_layer + width * 512)


def matmul_gflops(seconds: float) -> dict[str, float]:
    import torch

    out = {}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            torch.mm(a, b)
            reps += 1
        out[f"torch {n}"] = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ a
        reps += 1
    out["numpy 2048"] = 2 * 2048**3 * reps / (time.perf_counter() - start) / 1e9
    return out


def inputs():
    from xmodal.samples import clipart_images, sample_photos

    items = clipart_images("test")
    step = max(1, len(items) // N_IMAGES)
    picked = items[::step][: N_IMAGES - 8]
    photos = sample_photos(Path(__file__).parent / "out" / "photos")[:8]
    return [x.path for x in picked] + [p.path for p in photos], [x.caption for x in picked][
        :N_TEXTS
    ]


def model_name(key: str, exports: Path) -> str:
    if key != "vit":
        return MODELS[key]
    path = exports / VIT_WEIGHTS
    if not path.is_file():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32")
        exports.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"openclip:ViT-B-32/{path}"


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM starts afresh at exec, ru_maxrss does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_variant(model: str, variant: str, exports: Path):
    from xmodal.models import load_model

    lite = model == "lite"
    if variant == "torch":
        return load_model(model, runtime="torch") if lite else load_model(model)
    if variant == "torch-int8":
        extra = {"runtime": "torch"} if lite else {}
        return load_model(model, quantize="int8", **extra)
    return load_model(f"onnx:{exports / export_name(model, variant)}")


def export_name(model: str, variant: str) -> str:
    key = "lite" if model == "lite" else "vit-b-32-seed0"
    return f"{key}-{variant.split('-')[1]}"


def rate(fn, items, batch: int, seconds: float) -> float:
    fn(items[:batch])  # warm-up: sessions, caches, lazy towers
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(items) - batch + 1, batch):
            fn(items[i : i + batch])
            done += batch
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


def child(model: str, variant: str, exports: Path, seconds: float) -> dict:
    from xmodal.images import load_image

    paths, texts = inputs()
    encoder = load_variant(model, variant, exports)
    prepared = [encoder.prepare_image(load_image(p, min_side=encoder.decode_size)) for p in paths]
    result = {"runtime": getattr(encoder, "runtime", variant)}
    for batch in BATCHES:
        result[f"img/s b{batch}"] = rate(
            lambda xs, b=batch: encoder.embed_prepared(xs, batch_size=b), prepared, batch, seconds
        )
        result[f"txt/s b{batch}"] = rate(
            lambda xs, b=batch: encoder.embed_texts(xs, batch_size=b), texts, batch, seconds
        )
    images = encoder.embed_prepared(prepared)
    vectors = encoder.embed_texts(texts)
    out = Path(os.environ["XMODAL_BENCH_VECTORS"])
    np.save(out.with_suffix(".img.npy"), images)
    np.save(out.with_suffix(".txt.npy"), vectors)
    result["peak MB"] = peak_mb()
    return result


def ensure_exports(model: str, exports: Path) -> None:
    from xmodal.models.export import export_onnx

    for variant, int8 in (("onnx-fp32", False), ("onnx-int8", True)):
        folder = exports / export_name(model, variant)
        if not (folder / "xmodal-onnx.json").is_file():
            print(f"exporting {model} ({variant}) to {folder} ...", flush=True)
            report = export_onnx(model, folder, int8=int8, force=True)
            for note in report.notes:
                print(f"  {note}")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lite,vit")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seconds", type=float, default=3.0, help="per batch size and side")
    ap.add_argument("--exports", type=Path, default=Path(__file__).parent / "out" / "exports")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.exports, args.seconds)))
        return

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    mm = matmul_gflops(args.seconds)
    peak = max(mm.values())
    print("matmul fp32 GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in mm.items()))
    vectors_dir = args.exports / "vectors"
    vectors_dir.mkdir(parents=True, exist_ok=True)
    for key in args.models.split(","):
        model = model_name(key, args.exports)
        ensure_exports(model, args.exports)
        rows, reference = {}, None
        for variant in args.variants.split(","):
            env = {**os.environ, "XMODAL_BENCH_VECTORS": str(vectors_dir / f"{key}-{variant}")}
            cmd = [sys.executable, __file__, "--child", model, variant, "--seconds",
                   str(args.seconds), "--exports", str(args.exports)]  # fmt: skip
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{key} {variant}: failed: {last}")
                continue
            rows[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            img = np.load(vectors_dir / f"{key}-{variant}.img.npy")
            txt = np.load(vectors_dir / f"{key}-{variant}.txt.npy")
            if reference is None:
                reference = (img, txt)
            rows[variant]["img cos min"] = float((img * reference[0]).sum(1).min())
            rows[variant]["txt cos min"] = float((txt * reference[1]).sum(1).min())
        report(key, rows, peak)


def report(key: str, rows: dict, peak: float) -> None:
    if not rows:
        return
    columns = list(next(iter(rows.values())))
    print(f"\n{key} ({MODELS[key]}{', seed 0' if key == 'vit' else ''})")
    print(f"{'variant':12}" + "".join(f"{c:>13}" for c in columns))
    for variant, row in rows.items():
        cells = [
            f"{v:13.5f}" if "cos" in k else f"{v:13.1f}" if isinstance(v, float) else f"{v!s:>13}"
            for k, v in row.items()
        ]
        print(f"{variant:12}" + "".join(cells))
    base = rows.get("torch")
    for variant in ("onnx-fp32", "onnx-int8", "torch-int8"):
        if base and variant in rows:
            ratios = ", ".join(
                f"b{b} {rows[variant][f'img/s b{b}'] / base[f'img/s b{b}']:.2f}x" for b in BATCHES
            )
            print(f"  {variant} images/s vs torch eager: {ratios}")
    if key == "vit":
        flops = vit_b32_flops()
        for variant in ("torch", "onnx-fp32"):
            if variant in rows:
                reached = rows[variant]["img/s b32"] * flops / 1e9
                print(
                    f"  {variant} batch 32: {reached:.0f} GFLOP/s = {reached / peak:.0%} of "
                    f"matmul {peak:.0f} GFLOP/s ({flops / 1e9:.2f} GFLOP per image)"
                )


if __name__ == "__main__":
    main()
