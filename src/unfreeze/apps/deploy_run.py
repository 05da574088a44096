"""`unfreeze export RUN --format F --out DIR`: the deployment file, its check against PyTorch, model_card.md.

The file itself comes from `unfreeze.inference.deploy` (uint8 RGB in, probabilities out). Here it is
run on the validation images, compared with the PyTorch model, optionally quantized to int8
(`unfreeze.inference.quantize`: calibrated on training images; accuracy, latency and size measured
against float32 on the validation images, and the file to deploy recommended), and described in
DIR/model_card.md together with what the run directory records: classes, metrics, data and recipe.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shlex
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unfreeze._io import OUTPUT_ERRNOS, OutputWriteError, atomic_path, free_bytes
from unfreeze.apps.errors import AppError
from unfreeze.apps.report import best_epoch
from unfreeze.apps.run_files import RunFile
from unfreeze.apps.trust_sections import model_card_lines
from unfreeze.data.transforms import MAX_CROP_ASPECT
from unfreeze.inference.deploy import FORMATS, check_export, export_deployable, load_deployed
from unfreeze.inference.predict import trust_of
from unfreeze.inference.quantize import INT8_METHODS, compare_int8
from unfreeze.tasks import MultiLabel, Regression

__all__ = ["DeployReport", "export_run", "int8_lines", "refuse_int8", "write_model_card"]

CARD_FILE = "model_card.md"
MANIFEST_FILE = "unfreeze_export.json"  # the files that `unfreeze export --format` wrote into this folder
_FULL_DISK_MARGIN = 1 << 20  # less free than this after a failed write: the disk was full
_USAGE = {
    "onnx": ("import onnxruntime\nsession = onnxruntime.InferenceSession('model.onnx')\n"
             "probabilities = session.run(None, {'image': batch})[0]"),
    "torchscript": ("import torch\nmodel = torch.jit.load('model.pt').eval()\nwith torch.no_grad():\n"
                    "    outputs = model(torch.from_numpy(batch))\n"
                    "probabilities = (outputs[0] if isinstance(outputs, tuple) else outputs).numpy()  # + ood_score"),
    "openvino": ("import openvino\nmodel = openvino.Core().compile_model('model.xml', 'CPU')\n"
                 "probabilities = model(batch)[0]"),
}
_REGRESSION_USAGE = {
    "onnx": ("import onnxruntime\nsession = onnxruntime.InferenceSession('model.onnx')\n"
             "values = session.run(None, {'image': batch})[0]"),
    "torchscript": ("import torch\nmodel = torch.jit.load('model.pt').eval()\nwith torch.no_grad():\n"
                    "    values = model(torch.from_numpy(batch)).numpy()"),
    "openvino": ("import openvino\nmodel = openvino.Core().compile_model('model.xml', 'CPU')\n"
                 "values = model(batch)[0]"),
}
_LATENCY_RUNS = 20  # timed calls per batch size at most, after 3 warm-up calls; the median is reported
_LATENCY_BUDGET_S = 2.0
# The same steps as training's decoding (data/decode.py) and validation resize (data/transforms.py), in PIL.
_PREPROCESS = """\
import numpy as np
from PIL import Image, ImageOps

def preprocess(path):
    \"\"\"One image file as the model's input: uint8 RGB [1, 3, {size}, {size}].\"\"\"
    image = ImageOps.exif_transpose(Image.open(path))  # the camera's orientation, as in training
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey: scaled to 8 bits, as in training
        image = Image.fromarray(np.rint(np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")  # transparent pixels on white, as in training
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB")  # grey, palette, CMYK → 3 channels
{resize}
    left, top = (image.width - {size}) // 2, (image.height - {size}) // 2
    image = image.crop((left, top, left + {size}, top + {size}))  # the centre {size} × {size}
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)[None]  # HWC → NCHW, values 0-255

batch = preprocess("photo.jpg")"""
_RESIZE = {
    "crop": ("    scale = {item} / min(image.size)  # shorter side to {item} px, bilinear\n"
             "    width, height = max({item}, round(image.width * scale)), max({item}, round(image.height * scale))\n"
             "    # at most {longest} px long (a strip 1 px high would be gigabytes): its centre, as in training\n"
             "    keep_x, keep_y = min(1.0, {longest} / width), min(1.0, {longest} / height)\n"
             "    box = (image.width * (1 - keep_x) / 2, image.height * (1 - keep_y) / 2,\n"
             "           image.width * (1 + keep_x) / 2, image.height * (1 + keep_y) / 2)\n"
             "    image = image.resize((min(width, {longest}), min(height, {longest})), Image.Resampling.BILINEAR, "
             "box=box)"),
    "pad": ("    scale = {item} / max(image.size)  # longer side to {item} px, bilinear, centred on black\n"
            "    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),\n"
            "                         Image.Resampling.BILINEAR)\n"
            "    image = Image.new(\"RGB\", ({item}, {item}))\n"
            "    image.paste(small, (({item} - small.width) // 2, ({item} - small.height) // 2))"),
    "squish": "    image = image.resize(({item}, {item}), Image.Resampling.BILINEAR)  # both sides, bilinear",
}


@dataclass
class DeployReport:
    """What `export_run` wrote and measured.

    Example:
        >>> report = export_run(learn, "deploy", "onnx", images, targets)  # doctest: +SKIP
        >>> report.files, report.max_difference  # doctest: +SKIP
        ([PosixPath('deploy/model.onnx')], 2.9e-07)
    """

    files: list[Path]
    max_difference: float
    images: int
    from_validation: bool  # False: random images (no validation data was available)
    card: Path | None = None
    int8: dict[str, Any] | None = field(default=None)
    # What max_difference is the largest difference of: the ood_score is no probability, its scale is its own.
    compared: str = "a probability"
    latency: dict[str, Any] | None = field(default=None)  # measure_latency's answer for the written file


def export_run(learner: Any, out: str | Path, fmt: str, images: torch.Tensor, targets: torch.Tensor | None = None,
               int8: bool = False, calibration: torch.Tensor | None = None,
               progress: Callable[[int, int], None] | None = None) -> DeployReport:
    """Write the model in `fmt` to `out`, check it on `images` (uint8 [N, 3, S, S]), optionally add int8.

    Args:
        learner: The model to export (from the run's model.unfreeze).
        out: The folder to write into (created).
        fmt: "onnx", "torchscript" or "openvino".
        images: Validation images as the deployment takes them; random ones when there is no data.
        targets: Their labels (the dataset's encoding), to measure the int8 accuracy change.
        int8: Also write an int8 copy (model.int8.onnx, or model.int8.xml + .bin; see `INT8_METHODS`),
            measured against float32 (`unfreeze.inference.quantize.compare_int8`).
        calibration: uint8 images from which the int8 copy measures activation ranges (the training
            images); default: `images`.
        progress: Called with (done, total) while the int8 copy is calibrated.

    The files are written and checked in a scratch folder inside `out`, then renamed into place; the
    folder's manifest (unfreeze_export.json) lists them, so the same command may replace them later.

    Raises:
        AppError: --int8 with TorchScript (it has no int8 variant here) or with a regression model (the int8
            copy is judged by its accuracy), or `out` holds a file of that
            name that no export wrote (not in its manifest): it is never replaced.
        OutputWriteError: The disk is full (or read-only): one line naming the file; nothing is left behind.
        ImportError: The format's package is missing (the message has the pip line).

    Example:
        >>> export_run(learn, "deploy", "onnx", images, targets, int8=True).max_difference  # doctest: +SKIP
        3.2e-07
    """
    if int8:  # before the manifest: a refused export leaves no file
        refuse_int8(fmt, isinstance(learner.task, Regression))
    out = Path(out)
    names = [*FORMATS[fmt], *(_int8_names(fmt) if int8 else [])]
    _refuse_foreign_files(out, fmt)
    created = not out.exists()
    _record_in_manifest(out, names)  # before writing: an interrupted export may replace its own files
    # Everything is written and checked in a scratch folder beside the files, then renamed into place:
    # a failure (a full disk, a failed check) leaves the previous files and no temporary one.
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=".unfreeze-export-") as folder:
            scratch = Path(folder)
            try:
                report = _export_and_check(learner, scratch, fmt, images, targets, int8, calibration, progress)
            except Exception as error:
                raise _full_disk(error, out, scratch, names) from error
            # An .xml is never left pointing at an old .bin: the .bin goes first.
            for path in sorted(report.files, key=lambda path: path.suffix != ".bin"):
                os.replace(path, out / path.name)
            report.files = [out / path.name for path in report.files]
    except Exception:
        if created:  # a folder this export made holds nothing but its manifest, which lists files never written
            _remove_if_only_manifest(out)
        raise
    return report


def _remove_if_only_manifest(out: Path) -> None:
    """Remove `out` when it holds nothing but the manifest (a new folder whose export failed)."""
    with contextlib.suppress(OSError):
        if [path.name for path in out.iterdir()] == [MANIFEST_FILE]:
            (out / MANIFEST_FILE).unlink()
            out.rmdir()


def refuse_int8(fmt: str, regression: bool) -> None:
    """The AppError of an int8 copy that `export_run` cannot make: a format without one (TorchScript), or a
    regression model (the int8 copy is recommended by the accuracy it keeps, which numbers do not have).

    Example:
        >>> refuse_int8("onnx", regression=False)  # nothing to refuse
    """
    if fmt not in INT8_METHODS:
        raise AppError(f"--int8 exists for --format {' and '.join(INT8_METHODS)}, not {fmt}. Pass --format onnx "
                       "--int8 or --format openvino --int8")
    if regression:
        raise AppError("--int8 recommends the int8 copy by the accuracy it keeps on the validation images; this model "
                       "predicts numbers (a regression task), which that check does not measure. Export it without "
                       "--int8 (float32)")


def _export_and_check(learner: Any, scratch: Path, fmt: str, images: torch.Tensor, targets: torch.Tensor | None,
                      int8: bool, calibration: torch.Tensor | None,
                      progress: Callable[[int, int], None] | None) -> DeployReport:
    files = export_deployable(learner, scratch, fmt)
    difference, probs, _ = check_export(learner, files[0], fmt, images)
    report = DeployReport(files, difference, len(images), from_validation=targets is not None,
                          compared=_compared(learner))
    report.latency = measure_latency(files[0], fmt, images)
    if int8:
        calibrated_on = "training images" if calibration is not None else "check images"
        comparison = compare_int8(learner, files, fmt, images, targets, images if calibration is None else calibration,
                                  isinstance(learner.task, MultiLabel), probs, progress=progress)
        report.int8 = {**comparison.to_dict(), "file": comparison.files[0].name,
                       "calibration": f"{comparison.calibration_images} {calibrated_on}"}
        report.files = [*files, *comparison.files]
    return report


def _compared(learner: Any) -> str:
    """What a check's largest difference is of: a regression's value, or a probability (and the ood_score,
    whose scale is its own)."""
    if isinstance(learner.task, Regression):
        return "a value"
    return "a probability or the ood_score" if trust_of(learner).has_score else "a probability"


def _machine() -> str:
    """This machine's CPU in a few words (the model name where Linux says it), for the latency's context."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()}"


def measure_latency(path: Path, fmt: str, images: torch.Tensor, runs: int = _LATENCY_RUNS) -> dict[str, Any]:
    """The exported file's median wall time per call on this machine's CPU: one image, and a batch.

    Measured with the file's own runtime (as `load_deployed` runs it), after 3 warm-up calls, over `runs`
    calls or about 2 s per batch size, whichever ends first. The numbers
    describe the exporting machine only; they are for the model card, not a benchmark.

    Example:
        >>> measure_latency(Path("deploy/model.onnx"), "onnx", images)["batch_1_ms"]  # doctest: +SKIP
        3.1
    """
    deployed = load_deployed(path, fmt)
    batch = min(32, len(images))
    timings: dict[int, tuple[float, int]] = {}
    for size in sorted({1, batch}):
        inputs = images[:size].contiguous().numpy()
        for _ in range(3):
            deployed(inputs)
        seconds: list[float] = []
        # At most `runs` calls and about _LATENCY_BUDGET_S per size (at least 3): a large model on a slow
        # CPU must not make the export wait long for a number that only describes this machine.
        while len(seconds) < runs and (len(seconds) < 3 or sum(seconds) < _LATENCY_BUDGET_S):
            started = time.perf_counter()
            deployed(inputs)
            seconds.append(time.perf_counter() - started)
        timings[size] = (statistics.median(seconds) * 1000, len(seconds))
    return {"batch_1_ms": round(timings[1][0], 3), "batch": batch, "batch_ms": round(timings[batch][0], 3),
            "runs": min(timings[1][1], timings[batch][1]), "machine": _machine(),
            "torch_threads": torch.get_num_threads()}


def _full_disk(error: Exception, out: Path, scratch: Path, names: list[str]) -> Exception:
    """A write failure as one `OutputWriteError` naming the file in `out` (not the scratch folder).

    ONNX Runtime's quantizer hides a full disk behind a protobuf DecodeError of its own truncated file,
    so a failure with less space left in `out` than the largest file written so far (1 MiB at least) is
    reported as the full disk it is.
    """
    if isinstance(error, OutputWriteError):
        name = error.path.name
    else:  # the first file not complete in the scratch folder is the one that failed
        name = next((planned for planned in names if not (scratch / planned).is_file()), names[0])
    code = getattr(error, "errno", None)
    free = free_bytes(out)
    needed = max([_FULL_DISK_MARGIN, *(path.stat().st_size for path in scratch.rglob("*") if path.is_file())])
    if code in OUTPUT_ERRNOS or (code is None and free is not None and free < needed):
        reason = os.strerror(code if code in OUTPUT_ERRNOS else errno.ENOSPC)
        return OutputWriteError(out / name, free, reason, code if code in OUTPUT_ERRNOS else errno.ENOSPC)
    return error


def _int8_names(fmt: str) -> list[str]:
    return [f"model.int8{Path(name).suffix}" for name in FORMATS[fmt]]


def _manifest(out: Path) -> list[str]:
    """The files earlier exports wrote into `out` (its manifest; empty when there is none or it is damaged)."""
    try:
        content = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    files = content.get("files") if isinstance(content, dict) else None
    return [name for name in files if isinstance(name, str)] if isinstance(files, list) else []


def _record_in_manifest(out: Path, names: list[str]) -> None:
    written = sorted({*_manifest(out), *names, CARD_FILE})
    with atomic_path(out / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps({"written_by": "unfreeze export --format", "files": written}, indent=2) + "\n",
                       encoding="utf-8")


def _refuse_foreign_files(out: Path, fmt: str) -> None:
    """Refuse to write over model files in `out` that no unfreeze export wrote (a user's own model.pt).

    Ours are the files the folder's manifest lists (an export records them before it writes, so an
    interrupted one may be repeated); a folder of an older version is recognised by its model_card.md.
    """
    if (out / CARD_FILE).is_file() and not (out / MANIFEST_FILE).exists():
        return  # a previous export into this folder (before manifests): its files are replaced
    ours = set(_manifest(out))
    names = [*FORMATS[fmt], *_int8_names(fmt)]
    taken = [name for name in names if (out / name).exists() and name not in ours]
    if taken:
        raise AppError(f"{out} already holds {', '.join(taken)}, not written by 'unfreeze export' (not in its "
                       f"{MANIFEST_FILE}), so it is not replaced. Choose another --out, or move the file(s)")


def int8_lines(int8: dict[str, Any]) -> list[str]:
    """The int8 copy against float32, for the model card and the command's output: the recommendation first.

    Example:
        >>> int8_lines(report.int8)[0]  # doctest: +SKIP
        'Recommended: the float32 model: int8 loses 2.5 accuracy points (more than 1); use the float32 model.'
    """
    accuracy = ("accuracy not measured (no labelled images)" if int8["accuracy_fp32"] is None else
                f"accuracy {int8['accuracy_fp32']:.4f} (float32) → {int8['accuracy_int8']:.4f} (int8), a change of "
                f"{int8['accuracy_int8'] - int8['accuracy_fp32']:+.4f}")
    recommended = "the float32 model" if int8["recommended"] == "float32" else f"the int8 model `{int8['file']}`"
    return [f"Recommended: {recommended}: {int8['reason']}.", "",
            f"- `{int8['file']}`: {int8['method']}, calibrated on {int8['calibration']};",
            f"- {accuracy} on the validation images above;",
            f"- latency per image (median, batch of 1, this machine): {int8['latency_ms_int8']:.1f} ms int8 vs "
            f"{int8['latency_ms_fp32']:.1f} ms float32;",
            f"- size: {int8['size_mib_int8']:.1f} MiB int8 vs {int8['size_mib_fp32']:.1f} MiB float32;",
            *([] if int8.get("unknown_changed") is None else
              [f"- unknown flag (ood_score above the threshold) changed on {100 * int8['unknown_changed']:.1f}% of "
               "the validation images;"]),
            f"- largest difference from PyTorch of a probability"
            f"{'' if int8.get('unknown_changed') is None else ' or the ood_score'}: {int8['max_difference']:.2e}."]


def _threshold_lines(threshold: RunFile) -> list[str]:
    """The multi-label decision threshold's F1: the epoch's metrics are scored at the threshold before tuning
    (0.5), while the model decides at the tuned one, which the per-class table below is scored at."""
    f1, previous = threshold.number("f1"), threshold.get("previous")
    if f1 is None or not isinstance(previous, (int, float)):
        return []
    return [f"- at the decision threshold chosen on validation: macro F1 {f1:.4f} (the epoch's metrics above are "
            f"scored at {previous:.4g}; the table below at the chosen threshold)"]


def _run_facts(run_dir: Path | None) -> tuple[RunFile, RunFile]:
    """config.json and summary.json of the run (checked: a damaged one is one line naming it), or empty ones
    for a bare .unfreeze file."""
    empty = RunFile(Path("none"), {})
    if run_dir is None:
        return empty, empty
    config = RunFile.read(run_dir / "config.json") if (run_dir / "config.json").is_file() else empty
    summary = RunFile.read(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else empty
    return config, summary


def _per_class_lines(summary: RunFile, regression: bool = False) -> list[str]:
    """The validation set's precision, recall, F1 and support per class (a regression's MAE, RMSE, R² and
    count per output), as a Markdown table."""
    report = summary.section("report")
    rows = [(name, report.section(name)) for name in report.content if name != "accuracy"]
    if not rows:
        return []
    if regression:
        keys, count = ("mae", "rmse", "r2"), "count"
        lines = ["", "Per output (validation set):", "", "| output | MAE | RMSE | R² | count |",
                 "|---|---:|---:|---:|---:|"]
    else:
        keys, count = ("precision", "recall", "f1"), "support"
        lines = ["", "Per class (validation set):", "", "| class | precision | recall | F1 | support |",
                 "|---|---:|---:|---:|---:|"]
    for name, row in rows:
        cells = [row.number(key) for key in keys]
        support = row.number(count)
        scores = " | ".join("" if cell is None else f"{cell:.4f}" for cell in cells)
        lines.append(f"| {name.replace('|', '/')} | {scores} | {'' if support is None else int(support)} |")
    return lines


def _relative_command(command: str) -> str:
    """A command line with every absolute path replaced by its last part (folders of the training machine).

    Example:
        >>> _relative_command("unfreeze train /home/me/data/pets --out /home/me/runs/pets --size 224")
        'unfreeze train pets --out pets --size 224'
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    return shlex.join(Path(word).name if word.startswith("/") and len(word) > 1 else word for word in words)


def _outputs_section(task: Any, vocab: list[str], kind: str) -> list[str]:
    """The model card's section naming what the model tells apart (classes) or predicts (numbers)."""
    names = ", ".join(f"`{name}`" for name in vocab)
    if isinstance(task, Regression):
        what = "points (x, y)" if task.points else "numbers"
        return ["## Outputs", "", f"{len(vocab)} output{'s' * (len(vocab) != 1)}, regression ({what}): {names}", ""]
    return ["## Classes", "", f"{len(vocab)} classes, {kind}: {names}", ""]


def _output_line(task: Any, width: int, size: int) -> str:
    """The model card's line describing the graph's output."""
    if not isinstance(task, Regression):
        return f"- output `probabilities`: float32 [N, {width}], in the class order above."
    line = f"- output `values`: float32 [N, {width}], in the output order above"
    if task.points:  # what the network learns: coordinates scaled to the input square, not pixels
        return (f"{line}; each point is (x, y) in [-1, 1] of the {size} × {size} input: pixel x = (value + 1) / 2 × "
                f"{size} (y alike), before the resize is undone.")
    return line + "."


def write_model_card(report: DeployReport, learner: Any, fmt: str, source: Path, run_dir: Path | None) -> Path:
    """DIR/model_card.md: classes, metrics, data, recipe, input format and the export's check.

    Example:
        >>> card = write_model_card(report, learn, "onnx", Path("runs/pets/model.unfreeze"),
        ...                         Path("runs/pets"))  # doctest: +SKIP
        PosixPath('deploy/model_card.md')
    """
    config, summary = _run_facts(run_dir)
    options = config.section("options").content
    dataset = learner.dls.valid.dataset
    size, vocab = int(learner.dls.size), list(learner.dls.vocab)
    regression = isinstance(learner.task, Regression)
    kind = "single-label (softmax)"
    if isinstance(learner.task, MultiLabel):  # the threshold train chose on the validation set, not always 0.5
        threshold = learner.task.threshold
        cut = (", ".join(f"`{name}` {value:.4g}" for name, value in zip(learner.dls.vocab, threshold, strict=True))
               if isinstance(threshold, tuple) else f"{threshold:.4g}")
        kind = f"multi-label (sigmoid per class, a class at or above {cut} is predicted)"
    method, item_size = dataset.resize_method, int(dataset.item_size)
    resized = {"crop": f"the shorter side to {item_size} px", "pad": f"the longer side to {item_size} px, centred on "
               f"a black {item_size} × {item_size} square", "squish": f"both sides to {item_size} px (aspect not kept)"}
    # Relative names only: the card travels with the files, the training machine's folders mean nothing there.
    lines = [f"# Model card: {run_dir.name if run_dir else source.stem}", "",
             f"Exported by unfreeze from `{source.name}` as {fmt} ({', '.join(path.name for path in report.files)}).",
             "", *_outputs_section(learner.task, vocab, kind),
             "## Input and output", "",
             f"- input `image`: uint8 RGB, shape [N, 3, {size}, {size}] (N any): layout NCHW (channels first), channel "
             "order RGB, values 0-255 (not scaled to 0-1, not normalised);",
             "- colour: grey, palette and CMYK images must be converted to RGB (3 channels); transparent pixels are "
             "composited on white first (as in training); 16-bit images are scaled to 8 bits (÷ 257, not clipped); "
             "the EXIF orientation is applied;",
             f"- resize (`{method}`): {resized.get(method, method)} with **bilinear** interpolation (PIL), then take "
             f"the centre {size} × {size} pixels;",
             "- scaling to 0-1 and the normalization by the model's mean and std are inside the model: feed the raw "
             "pixels;",
             _output_line(learner.task, len(vocab), size), "",
             "## Metrics", ""]
    best = best_epoch(summary.rows("history"))
    final = summary.section("final").numbers()
    if final:
        # summary.json's final row is the exported epoch's (the best one unless --keep last), not the last epoch's.
        epoch = final.get("epoch")
        named = "final epoch" if epoch is None else f"epoch {epoch:g}, the exported one"
        lines.append(f"- {named}: " + ", ".join(f"{key} {value:.4f}" for key, value in final.items()
                                                if key not in ("epoch", "time") and isinstance(value, float)))
    lines += _threshold_lines(summary.section("threshold"))
    if best is not None:
        lines.append(f"- best {best[0]}: {float(best[1][best[0]]):.4f} at epoch {best[1].get('epoch')}")
    if not final and best is None:
        lines.append("- not recorded (the export was not made from a run directory)")
    lines += _per_class_lines(summary, regression)
    data = summary.section("data")
    lines += ["", "## Data", "", f"- source: `{Path(str(options.get('data', 'unknown'))).name}`"
              + (f" (CSV `{options['csv']}`)" if options.get("csv") else ""),
              f"- {data.text('train', '?')} training and {data.text('valid', '?')} validation images"
              if data.content else "- image counts not recorded", "",
              "## Recipe", "", f"- architecture: `{getattr(learner.model, 'arch', '?')}`"]
    if options:
        lines.append(f"- {options.get('epochs', '?')} epochs after {options.get('freeze_epochs', '?')} frozen, "
                     f"LR {summary.section('lr').text('base_lr') or options.get('lr')}, size {options.get('size')}, "
                     f"batch size {options.get('bs')}, seed {options.get('seed')}")
    if config.text("rerun"):
        lines += ["", "Rerun (folders by name only):", "", "```bash", _relative_command(config.text("rerun")), "```"]
    where = "validation images" if report.from_validation else "random images (no validation data was available)"
    lines += ["", "## Check against PyTorch", "",
              f"The exported file was run on {report.images} {where} and compared with the PyTorch model: the largest "
              f"difference of {report.compared} is {report.max_difference:.2e}."]
    if report.int8 is not None:
        lines += ["", "## int8", "", *int8_lines(report.int8)]
    if report.latency is not None:
        latency = report.latency
        lines += ["", "## Latency", "",
                  f"Measured on the exporting machine ({latency['machine']}) with the file's runtime, median of "
                  f"{latency['runs']} or more calls: {latency['batch_1_ms']:.3g} ms for one image, "
                  f"{latency['batch_ms']:.3g} ms for a batch of {latency['batch']} "
                  f"({latency['batch_ms'] / latency['batch']:.3g} ms per image). Other machines differ; "
                  "measure on yours."]
    if not regression:  # a regression's numbers have no temperature or unknown score
        lines += ["", *model_card_lines(trust_of(learner), fmt)]  # the temperature, ood_score and its threshold
    resize = _RESIZE.get(method, _RESIZE["squish"]).format(item=item_size, longest=MAX_CROP_ASPECT * item_size)
    preprocess = _PREPROCESS.format(size=size, resize=resize)
    lines += ["", "## Usage", "", "Preprocessing (Python, PIL and NumPy), then the runtime:", "", "```python",
              preprocess, "", (_REGRESSION_USAGE if regression else _USAGE)[fmt], "```", "",
              "The file also stores this description as JSON metadata (key `unfreeze`):", "",
              "```json", json.dumps({"vocab": vocab, "size": size, "resize_method": dataset.resize_method}), "```", ""]
    target = report.files[0].parent / CARD_FILE
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    report.card = target
    return target

