"""Cold start of the lite model's common commands against `import torch, transformers`, in one run.

    python benchmarks/cold_start.py [--repeat 3] [--model lite]

Each figure is the best of --repeat fresh processes (so the OS file cache is warm, Python's
state is not): `xmodal search "a cat"` on an indexed collection (the 14 sample photos),
`xmodal classify` of one photo against three labels, and `xmodal serve` from launch to its
first answer of GET /search. The baseline is a bare `python -c "import torch, transformers"`,
measured in the same run and printed with each ratio. The lite exports (MiniLM text tower and
the image tower, ONNX) are made once before timing: the first run after an upgrade pays them.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from xmodal.samples import sample_photos

# The console script beside this interpreter: what a user runs.
XMODAL = [str(Path(sys.executable).with_name("xmodal"))]


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_to_first_answer(db: Path, env: dict) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/search"
    start = time.perf_counter()
    server = subprocess.Popen(
        [*XMODAL, "serve", "--db", str(db), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"xmodal serve exited with code {server.returncode}")
            try:
                if httpx.get(url, params={"q": "a cat"}, timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--model", default="lite")
    args = parser.parse_args()
    env = {**os.environ, "XMODAL_MODEL": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        photos = sample_photos(Path(tmp) / "photos")
        db = Path(tmp) / "db"
        # Indexing and one classify make both exports (if not cached yet) before any timing.
        subprocess.run(
            [*XMODAL, "index", "--db", str(db), str(Path(tmp) / "photos")],
            env=env,
            check=True,
            capture_output=True,
        )
        cat = str(photos[0].path)
        runs = {
            'python -c "import torch, transformers"': lambda: timed(
                [sys.executable, "-c", "import torch, transformers"], env
            ),
            'xmodal search "a cat"': lambda: timed(
                [*XMODAL, "search", "--db", str(db), "a cat"], env
            ),
            "xmodal classify (1 photo, 3 labels)": lambda: timed(
                [*XMODAL, "classify", "-l", "cat,dog,car", cat], env
            ),
            "xmodal serve to first /search": lambda: serve_to_first_answer(db, env),
        }
        runs["xmodal classify (1 photo, 3 labels)"]()  # warm the image tower's export
        best = {name: min(run() for _ in range(args.repeat)) for name, run in runs.items()}
    base = next(iter(best.values()))
    print(f"cold start, best of {args.repeat}, model {args.model}, {os.cpu_count()} CPUs")
    for name, seconds in best.items():
        print(f"  {name:42} {seconds:6.2f} s  {seconds / base:5.2f}x the torch import")


if __name__ == "__main__":
    main()
