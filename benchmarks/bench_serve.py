"""`unfreeze serve` under load: requests/s and p50/p95 latency, 1 and 16 clients, batching on and off.

    .venv/bin/python benchmarks/bench_serve.py                        # efficientnet_lite0 at 224 px
    .venv/bin/python benchmarks/bench_serve.py --arch test_resnet --size 32 --requests 64   # a quick look
    .venv/bin/python benchmarks/bench_serve.py --runtimes torch,onnx,openvino --size 128 --name serve_runtime_128

Each configuration starts `unfreeze serve MODEL --port 0` in a fresh process (with `--no-batching` for
"off"), sends a few warm-up requests, then `--requests` POST /predict requests of one image each from
N concurrent clients (threads with their own HTTP connection), on 127.0.0.1 only. The model has random
weights (speed does not depend on them) and the images are the bundled Fashion-MNIST sample's PNGs.
With --runtimes, each runtime (`unfreeze serve --runtime R`) is measured at 1 and 16 clients with
batching on, the runtimes taking turns. Results: benchmarks/results/serve.md and serve.json (or --out,
--name). The numbers measure this machine at
this moment: the 2-core reference machine is shared, so compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = [(1, True), (1, False), (16, True), (16, False)]  # (clients, batching)


def make_model(arch: str, size: int, target: Path) -> Path:
    """A random-weight model of `arch` over the bundled sample's classes, exported to `target`."""
    from unfreeze import ImageDataLoaders, sample_path, vision_learner

    dls = ImageDataLoaders.from_folder(sample_path(), size=size, bs=16, seed=0, num_workers=0)
    learn = vision_learner(dls, arch, pretrained=False, seed=0, device="cpu", quiet=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    return learn.export(target)


def start_server(model: Path, batching: bool, extra: list[str], runtime: str | None = None
                 ) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "unfreeze", "serve", str(model), "--port", "0", *extra]
    argv += ["--runtime", runtime] if runtime else []
    argv += [] if batching else ["--no-batching"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    line = process.stdout.readline() if process.stdout else ""
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r} {process.communicate(timeout=60)}")
    return process, line.split("at ", 1)[1].split("/ ", 1)[0]


def load(url: str, images: list[bytes], clients: int, requests: int) -> dict[str, float]:
    """`requests` single-image POSTs from `clients` threads; requests/s and latency percentiles (ms)."""
    per_client = [requests // clients + (index < requests % clients) for index in range(clients)]

    def client(count: int, offset: int) -> list[float]:
        latencies = []
        with httpx.Client(timeout=120) as session:
            for number in range(count):
                image = images[(offset + number) % len(images)]
                start = time.perf_counter()
                response = session.post(f"{url}/predict", files={"file": ("image.png", image)})
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()
        return latencies

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for warm in pool.map(client, [2] * clients, range(clients)):  # connections, first batches, caches
            del warm
        started = time.perf_counter()
        results = list(pool.map(client, per_client, [index * 7 for index in range(clients)]))
        elapsed = time.perf_counter() - started
    latencies = sorted(latency for result in results for latency in result)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": len(latencies), "seconds": elapsed, "requests_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * quantiles[49], "p95_ms": 1000 * quantiles[94]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=192, help="measured requests per configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--serve-args", default="", help="more options for unfreeze serve, e.g. '--max-batch 16'")
    parser.add_argument("--runtimes", default="", help="compare these runtimes, e.g. torch,onnx,openvino")
    parser.add_argument("--name", default="serve", help="results file name (without .md / .json)")
    args = parser.parse_args()
    runtimes: list[str | None] = [name for name in args.runtimes.split(",") if name] or [None]
    plan = ([(runtime, clients, True) for clients in (1, 16) for runtime in runtimes] if args.runtimes else
            [(None, clients, batching) for clients, batching in CONFIGURATIONS])

    from unfreeze import sample_path

    model = make_model(args.arch, args.size, ROOT / "benchmarks" / ".work" / f"serve-{args.arch}-{args.size}.unfreeze")
    images = [path.read_bytes() for path in sorted(sample_path().rglob("*.png"))[:64]]
    rows = []
    for runtime, clients, batching in plan:
        process, url = start_server(model, batching, args.serve_args.split(), runtime)
        try:
            health = httpx.get(f"{url}/health", timeout=60).json()
            result = load(url, images, clients, args.requests)
        finally:
            process.terminate()
            process.wait(timeout=60)
        rows.append({"runtime": health.get("runtime", "torch"), "clients": clients, "batching": batching, **result})
        print(f"{rows[-1]['runtime']:>8}, {clients:>2} clients, batching {'on ' if batching else 'off'}: "
              f"{result['requests_per_s']:7.1f} req/s, "
              f"p50 {result['p50_ms']:7.1f} ms, p95 {result['p95_ms']:7.1f} ms", flush=True)
    import torch

    machine = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
               "device": health["device"],
               "device_name": torch.cuda.get_device_name(0) if health["device"].startswith("cuda") else
               platform.processor() or platform.machine()}
    setup = {"arch": args.arch, "size": args.size, "requests": args.requests, "serve_args": args.serve_args,
             "batching": health["batching"]}
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"setup": setup, "machine": machine, "rows": rows}
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    lines = ["# unfreeze serve under load", "",
             f"`python benchmarks/bench_serve.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), "",
             f"{args.arch} at {args.size} px, random weights; {args.requests} single-image POST /predict requests per "
             f"row after warm-up, on 127.0.0.1; batching window {health['batching']['window_ms']} ms, at most "
             f"{health['batching']['max_batch']} images per model call. Machine: {machine['device']} "
             f"({machine['device_name']}), {machine['cpus']} CPUs, torch {machine['torch']}.", "",
             "| runtime | clients | batching | requests/s | p50 latency (ms) | p95 latency (ms) |",
             "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {row['runtime']} | {row['clients']} | {'on' if row['batching'] else 'off'} | "
              f"{row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |" for row in rows]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"Results: {args.out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
