"""Load on a real `xmodal serve` over loopback: throughput and latency of /embed/text and
/search at 1 and 32 concurrent clients, with micro-batching on and off, in one run; then
/search at 8 clients alone and while another client adds items (POST /items) non-stop.

    python benchmarks/server_load.py [--model lite] [--seconds 15] [--soak 60] [--mixed 15]

The server runs in its own process (so the load generator's GIL does not slow it), once with
micro-batching (XMODAL_MAX_BATCH=64) and once without (XMODAL_MAX_BATCH=1). Every request has a
distinct text, so nothing is answered from a cache. Each scenario stops after --seconds or
--max-requests, whichever comes first; --soak then runs a mixed load for that many seconds
and the script exits non-zero if any request failed. The mixed run (--mixed seconds per half,
0 = skip) shows what adding costs searches: adds decode and embed outside the collection lock,
so searches wait only for the model thread they share and a short catalog write. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from xmodal.engine.collection import Collection
from xmodal.samples import sample_photos

HOST = "127.0.0.1"
WORDS = [
    "cat",
    "dog",
    "car",
    "sunset",
    "beach",
    "city",
    "night",
    "coffee",
    "cup",
    "rocket",
    "flower",
    "horse",
    "clock",
    "moon",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(db: Path, model: str, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "XMODAL_MAX_BATCH": str(max_batch)}
    cmd = [sys.executable, "-m", "xmodal", "serve", "--db", str(db), "--model", model]
    proc = subprocess.Popen(
        [*cmd, "--host", HOST, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server did not start in 180 s")


def request_for(endpoint: str, i: int) -> dict:
    text = f"a photo of a {WORDS[i % len(WORDS)]} number {i}"
    if endpoint == "/embed/text":
        return {"method": "POST", "url": endpoint, "json": {"texts": [text]}}
    return {"method": "GET", "url": endpoint, "params": {"q": text, "k": 10}}


async def load(url: str, endpoints: list[str], clients: int, seconds: float, cap: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(cap))
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.perf_counter() >= stop_at:
                return
            start = time.perf_counter()
            try:
                r = await client.request(**request_for(endpoints[i % len(endpoints)], i))
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    ms = 1000 * np.array(latencies)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
    }


async def add_items(url: str, stop: asyncio.Event, size: int = 128) -> dict:
    """POST /items one after another until `stop`: distinct noise images (none is a copy)."""
    rng = np.random.default_rng(0)
    added, errors = 0, []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(png, "PNG")
            files = [("file", (f"added-{added}.png", png.getvalue(), "image/png"))]
            try:
                r = await client.post("/items", files=files)
                if r.status_code != 201:
                    errors.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            added += 1
    return {"added": added, "errors": errors}


async def searches_while_adding(url: str, clients: int, seconds: float) -> tuple[dict, dict]:
    stop = asyncio.Event()
    adder = asyncio.create_task(add_items(url, stop))
    searched = await load(url, ["/search"], clients, seconds, 10**7)
    stop.set()
    return searched, await adder


def mixed_run(url: str, seconds: float, clients: int = 8) -> list[str]:
    """/search at `clients` clients alone, then with items added continuously."""
    alone = asyncio.run(load(url, ["/search"], clients, seconds, 10**7))
    print(line(f"/search x{clients}, no adds", alone), flush=True)
    busy, adds = asyncio.run(searches_while_adding(url, clients, seconds))
    print(line(f"/search x{clients}, adding", busy), flush=True)
    print(
        f"  {adds['added']} items added in {seconds:.0f} s ({adds['added'] / seconds:.1f}/s); "
        f"search p50 x{busy['p50'] / alone['p50']:.2f}, p99 x{busy['p99'] / alone['p99']:.2f} "
        "with adds",
        flush=True,
    )
    return alone["errors"] + busy["errors"] + adds["errors"]


def line(label: str, r: dict) -> str:
    return (
        f"{label:34} {r['requests']:7d} {r['rps']:8.1f} {r['p50']:8.1f} {r['p99']:8.1f} "
        f"{len(r['errors']):6d}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="lite")
    ap.add_argument("--seconds", type=float, default=15, help="per scenario")
    ap.add_argument("--max-requests", type=int, default=20_000, help="per scenario")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--soak", type=float, default=0, help="seconds of mixed load, 0 = skip")
    ap.add_argument(
        "--mixed", type=float, default=15, help="seconds of searches, alone and while adding"
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xmodal-load-"))
    sample_photos(work / "photos")
    with Collection.open(work / "db", args.model) as collection:
        collection.index([work / "photos"])
        items = collection.count()
    print(
        f"model {args.model}, {items} items, {os.cpu_count()} cores; server and clients share them"
    )
    print(f"{'scenario':34} {'reqs':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    results: dict[tuple, dict] = {}
    failures: list[str] = []
    for batching, max_batch in (("batched", 64), ("unbatched", 1)):
        proc, url = start_server(work / "db", args.model, max_batch)
        try:
            for endpoint in ("/embed/text", "/search"):
                for clients in (1, args.clients):
                    if batching == "unbatched" and clients == 1:
                        continue  # one client never has company: same as batched
                    r = asyncio.run(load(url, [endpoint], clients, args.seconds, args.max_requests))
                    results[(endpoint, batching, clients)] = r
                    failures += r["errors"]
                    print(line(f"{endpoint} {batching} x{clients}", r), flush=True)
            if batching == "batched" and args.soak:
                r = asyncio.run(
                    load(url, ["/embed/text", "/search"], args.clients, args.soak, 10**7)
                )
                failures += r["errors"]
                print(line(f"soak {args.soak:.0f} s mixed x{args.clients}", r), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.mixed:  # on a copy: the adds grow the collection
        shutil.copytree(work / "db", work / "db-mixed")
        proc, url = start_server(work / "db-mixed", args.model, 64)
        try:
            failures += mixed_run(url, args.mixed)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\nthroughput ratios at {args.clients} clients:")
    for endpoint in ("/embed/text", "/search"):
        batched = results[(endpoint, "batched", args.clients)]["rps"]
        sequential = results[(endpoint, "batched", 1)]["rps"]
        unbatched = results[(endpoint, "unbatched", args.clients)]["rps"]
        print(
            f"  {endpoint:12} batched / sequential (1 client) {batched / sequential:5.2f}x   "
            f"batched / unbatched {batched / unbatched:5.2f}x"
        )
    if failures:
        print(f"\n{len(failures)} failed requests, e.g. {failures[:3]}")
        sys.exit(1)
    print("\nno failed requests")


if __name__ == "__main__":
    main()
