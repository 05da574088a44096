"""`unfreeze serve` under load: requests/s and p50/p95 latency, 1 and 16 clients, batching on and off.

    .venv/bin/python benchmarks/bench_serve.py                        # efficientnet_lite0 at 224 px
    .venv/bin/python benchmarks/bench_serve.py --arch test_resnet --size 32 --requests 64   # a quick look
    .venv/bin/python benchmarks/bench_serve.py --runtimes torch,onnx,openvino --size 128 --name serve_runtime_128

Each configuration starts `unfreeze serve MODEL --port 0` in a fresh process (with `--no-batching` for
"off"), sends a few warm-up requests, then `--requests` POST /predict requests of one image each from
N concurrent clients (threads with their own HTTP connection), on 127.0.0.1 only. The model has random
weights (speed does not depend on them) and the images are the bundled Fashion-MNIST sample's PNGs.
With --runtimes, each runtime (`unfreeze serve --runtime R`) is measured at 1 and 16 clients with
batching on, the runtimes taking turns. --baseline SRC adds the same rows for another checkout's `src`
folder (its own export of the same model, its own server and defaults, eager PyTorch), e.g. the commit an
issue started from; --rounds N repeats every row N times, interleaved, and reports medians and the
ratios against the baseline. Results: benchmarks/results/serve.md and serve.json (or --out,
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


def make_model_with(src: Path, arch: str, size: int, target: Path) -> Path:
    """`make_model` run by the unfreeze in `src` (another checkout), in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from bench_serve import make_model; "
            f"print(make_model({arch!r}, {size}, __import__('pathlib').Path({str(target)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(src)})
    return Path(done.stdout.strip().splitlines()[-1])


def make_model(arch: str, size: int, target: Path) -> Path:
    """A random-weight model of `arch` over the bundled sample's classes, exported to `target`."""
    from unfreeze import ImageDataLoaders, sample_path, vision_learner

    dls = ImageDataLoaders.from_folder(sample_path(), size=size, bs=16, seed=0, num_workers=0)
    learn = vision_learner(dls, arch, pretrained=False, seed=0, device="cpu", quiet=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    return learn.export(target)


def start_server(model: Path, batching: bool, extra: list[str], runtime: str | None = None,
                 src: Path = ROOT / "src") -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "unfreeze", "serve", str(model), "--port", "0", *extra]
    argv += ["--runtime", runtime] if runtime else []
    argv += [] if batching else ["--no-batching"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(src)})
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


def _median_row(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in ("requests_per_s", "p50_ms", "p95_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=192, help="measured requests per configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--serve-args", default="", help="more options for unfreeze serve, e.g. '--max-batch 16'")
    parser.add_argument("--runtimes", default="", help="compare these runtimes, e.g. torch,onnx,openvino")
    parser.add_argument("--baseline", type=Path, metavar="SRC",
                        help="also serve with the unfreeze in this src folder (eager PyTorch, its own defaults)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats of every row (medians)")
    parser.add_argument("--name", default="serve", help="results file name (without .md / .json)")
    args = parser.parse_args()
    runtimes: list[str | None] = [name for name in args.runtimes.split(",") if name] or [None]
    plan = ([(runtime, clients, True) for clients in (1, 16) for runtime in runtimes] if args.runtimes else
            [(None, clients, batching) for clients, batching in CONFIGURATIONS])
    sources: dict[str, Path] = {"this tree": ROOT / "src"}
    if args.baseline:
        sources = {"baseline": args.baseline.resolve(), **sources}

    from unfreeze import sample_path

    work = ROOT / "benchmarks" / ".work"
    models = {"this tree": make_model(args.arch, args.size, work / f"serve-{args.arch}-{args.size}.unfreeze")}
    if args.baseline:
        models["baseline"] = make_model_with(sources["baseline"], args.arch, args.size,
                                             work / f"serve-baseline-{args.arch}-{args.size}.unfreeze")
    images = [path.read_bytes() for path in sorted(sample_path().rglob("*.png"))[:64]]
    configurations = [(source, runtime, clients, batching) for runtime, clients, batching in plan
                      for source in sources if source == "this tree" or runtime in (None, "torch")]
    measured: dict[tuple[str, str | None, int, bool], list[dict[str, float]]] = {key: [] for key in configurations}
    runtime_of: dict[tuple[str, str | None, int, bool], str] = {}
    health: dict[str, object] = {}
    for _ in range(args.rounds):
        for key in configurations:
            source, runtime, clients, batching = key
            process, url = start_server(models[source], batching, args.serve_args.split(),
                                        runtime if source == "this tree" else None, sources[source])
            try:
                answer = httpx.get(f"{url}/health", timeout=60).json()
                result = load(url, images, clients, args.requests)
            finally:
                process.terminate()
                process.wait(timeout=60)
            health = answer if source == "this tree" else health
            runtime_of[key] = answer.get("runtime", "torch")
            measured[key].append(result)
            print(f"{source:>9} {runtime_of[key]:>8}, {clients:>2} clients, batching {'on ' if batching else 'off'}: "
                  f"{result['requests_per_s']:7.1f} req/s, p50 {result['p50_ms']:7.1f} ms, "
                  f"p95 {result['p95_ms']:7.1f} ms", flush=True)
    rows = [{"source": key[0], "runtime": runtime_of[key], "clients": key[2], "batching": key[3],
             "rounds": len(runs), **_median_row(runs), "runs": runs} for key, runs in measured.items()]
    for row in rows:  # against the baseline's row with the same clients and batching
        base = next((other for other in rows if other["source"] == "baseline" and other["clients"] == row["clients"]
                     and other["batching"] == row["batching"]), None)
        if base is not None:
            row["p50_vs_baseline"] = row["p50_ms"] / base["p50_ms"]
            row["throughput_vs_baseline"] = row["requests_per_s"] / base["requests_per_s"]
    import torch

    machine = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
               "device": health["device"], "load_average": os.getloadavg(),
               "device_name": torch.cuda.get_device_name(0) if str(health["device"]).startswith("cuda") else
               platform.processor() or platform.machine()}
    batching_settings: dict[str, object] = health["batching"]  # type: ignore[assignment]
    setup = {"arch": args.arch, "size": args.size, "requests": args.requests, "serve_args": args.serve_args,
             "batching": batching_settings, "rounds": args.rounds,
             "baseline": str(args.baseline) if args.baseline else None}
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"setup": setup, "machine": machine, "rows": rows}
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    with_baseline = args.baseline is not None
    lines = ["# unfreeze serve under load", "",
             f"`python benchmarks/bench_serve.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), "",
             f"{args.arch} at {args.size} px, random weights; {args.requests} single-image POST /predict requests per "
             f"row after warm-up, on 127.0.0.1; this tree's batching window {batching_settings['window_ms']} ms, at "
             f"most {batching_settings['max_batch']} images per model call; medians of {args.rounds} interleaved "
             f"round(s). Machine: {machine['device']} ({machine['device_name']}), {machine['cpus']} CPUs, torch "
             f"{machine['torch']}, load average at the end {machine['load_average'][0]:.2f}.", "",
             "| server | runtime | clients | batching | requests/s | p50 latency (ms) | p95 latency (ms) |"
             + (" p50 vs baseline | requests/s vs baseline |" if with_baseline else ""),
             "|---|---|---:|---|---:|---:|---:|" + ("---:|---:|" if with_baseline else "")]
    for row in rows:
        ratios = (f" {row['p50_vs_baseline']:.2f}x | {row['throughput_vs_baseline']:.2f}x |"
                  if "p50_vs_baseline" in row else (" | |" if with_baseline else ""))
        batching = "on" if row["batching"] else "off"
        lines.append(f"| {row['source']} | {row['runtime']} | {row['clients']} | {batching} | "
                     f"{row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |{ratios}")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"Results: {args.out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
