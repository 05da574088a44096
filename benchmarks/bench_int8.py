"""int8 against float32 on a trained run: accuracy on its validation images and latency, per runtime.

    .venv/bin/unfreeze demo --out runs/demo                      # the demo model (or any run directory)
    .venv/bin/python benchmarks/bench_int8.py runs/demo          # writes results/int8.md and int8.json

For ONNX Runtime three files are compared: float32, the static QDQ int8 that `export --int8` writes now
(calibrated on training images) and the dynamic int8 it wrote before; for OpenVINO, float32 and NNCF's
int8 (calibrated on the same training images). Accuracy is on every validation image; latency is the
median of interleaved calls on one image and on a batch of 32, after warm-up calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from unfreeze import runs
from unfreeze.apps.deploy_run import export_run
from unfreeze.cli.commands import load_run
from unfreeze.inference.deploy import check_export, quantize_onnx_int8, validation_images
from unfreeze.inference.quantize import accuracy, calibration_images, measure_latency
from unfreeze.tasks import MultiLabel

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per file and batch size")
    parser.add_argument("--write", action="store_true", help="write results/int8.md and results/int8.json")
    args = parser.parse_args()
    learn, dls, options = load_run(runs.Run(args.run_dir))
    images, targets = validation_images(dls.valid, limit=len(dls.valid.dataset))
    calibration = calibration_images(dls.train)
    multi_label = isinstance(learn.task, MultiLabel)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "load_average_1m_at_start": round(os.getloadavg()[0], 2), "date": dt.datetime.now(dt.UTC).isoformat()}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for fmt in ("onnx", "openvino"):
            out = Path(scratch) / fmt
            report = export_run(learn, out, fmt, images, targets, int8=True, calibration=calibration)
            files = {"float32": report.files[0], "int8 (static, calibrated)": out / report.int8["file"]}
            if fmt == "onnx":
                files["int8 (dynamic, before)"] = quantize_onnx_int8(report.files[0], out / "model.dynamic.onnx")
            single = measure_latency(files, fmt, images[:1].contiguous().numpy(), repeats=args.repeats)
            batch = measure_latency(files, fmt, images[:32].contiguous().numpy(), repeats=max(args.repeats // 5, 5))
            for name, path in files.items():
                _, probs, _ = check_export(learn, path, fmt, images)
                size = sum(p.stat().st_size for p in [path, *([path.with_suffix(".bin")] if fmt == "openvino"
                                                               else [])]) / 2**20
                rows.append({"runtime": fmt, "model": name, "file": path.name, "accuracy": accuracy(probs, targets,
                                                                                                  multi_label),
                             "latency_ms_1": single[name], "latency_ms_32": batch[name], "size_mib": size})
            rows[-len(files)]["recommended"] = report.int8["recommended"]
            rows[-len(files)]["reason"] = report.int8["reason"]
    result = {"run": str(args.run_dir), "arch": options.get("arch"), "size": int(dls.size),
              "validation_images": len(images), "calibration_images": len(calibration), "machine": machine,
              "rows": rows}
    print(json.dumps(result, indent=2))
    if args.write:
        (RESULTS / "int8.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "int8.md").write_text(markdown(result))
        print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["# int8 against float32 (benchmarks/bench_int8.py)", "",
             f"Run `{result['run']}` ({result['arch']}, {result['size']} px): accuracy on its "
             f"{result['validation_images']} validation images; int8 calibrated on {result['calibration_images']} "
             "training images (spread over the training items, prepared as the export's input).",
             "Machine: " + ", ".join(f"{key} {value}" for key, value in result["machine"].items()) + ".",
             "Latency: median of interleaved calls after warm-up, one image and a batch of 32.", "",
             "| runtime | model | accuracy | Δ vs float32 (points) | ms / 1 image | ms / 32 images | MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base: dict[str, dict] = {}
    for row in result["rows"]:
        base.setdefault(row["runtime"], row)
        reference = base[row["runtime"]]
        delta = 100 * (row["accuracy"] - reference["accuracy"])
        lines.append(f"| {row['runtime']} | {row['model']} | {row['accuracy']:.3f} | {delta:+.1f} | "
                     f"{row['latency_ms_1']:.2f} | {row['latency_ms_32']:.1f} | {row['size_mib']:.1f} |")
    lines.append("")
    for runtime, row in base.items():
        lines.append(f"- {runtime}: `export --int8` recommends the {row['recommended']} model: {row['reason']}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
