"""int8 copies of deployment exports, calibrated on training images, and how they compare with float32.

    ONNX      ONNX Runtime static post-training quantization: QDQ format, int8 weights per output
              channel, uint8 activations whose ranges are measured on calibration images
    OpenVINO  NNCF post-training quantization (int8 weights and activations, calibrated the same way)

Calibration images are uint8 [N, 3, S, S], prepared exactly as the deployment's input (the training
images, resized and centre-cropped as the validation transforms do): the validation images then
measure the accuracy change without having been seen. `compare_int8` measures both files on the
validation images: accuracy, the largest probability change, latency per image (interleaved runs,
medians), size and, for a model with an unknown score, how many images the int8 file's `ood_score`
flags differently, and says which one to use. An int8 file that loses more than one accuracy point,
changes more than 1% of the unknown flags or is no faster than float32 is not recommended.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unfreeze._io import atomic_path
from unfreeze.inference.deploy import check_export, deployment_input, load_deployed, quantize_openvino_int8

__all__ = ["INT8_METHODS", "MAX_ACCURACY_DROP", "MAX_UNKNOWN_CHANGE", "Int8Comparison", "accuracy",
           "calibration_images", "compare_int8", "measure_latency", "quantize", "quantize_onnx_static", "recommend"]

# The formats with an int8 variant, and how it is made (named in the CLI output and the model card).
INT8_METHODS = {"onnx": "ONNX Runtime static quantization (QDQ, per-channel int8 weights, uint8 activations)",
                "openvino": "NNCF post-training quantization (int8 weights and activations)"}
# An int8 file that loses more accuracy than this (a fraction: one point) is not recommended.
MAX_ACCURACY_DROP = 0.01
# The largest share of images whose unknown flag int8 may change before float32 is recommended.
MAX_UNKNOWN_CHANGE = 0.01

Progress = Callable[[int, int], None]  # (done, total), called as calibration images are consumed


def _onnxruntime_quantization() -> Any:
    try:
        importlib.import_module("onnxruntime")
    except ImportError as error:
        raise ImportError(f"--format onnx --int8 needs onnxruntime: pip install 'unfreeze[onnx]' ({error}).") from error
    return importlib.import_module("onnxruntime.quantization")


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Hold back ONNX Runtime's advice printed on the root logger while it quantizes (the command prints
    its own summary of the result)."""
    root = logging.getLogger()
    own_loggers_only = logging.Filter("onnxruntime")
    root.addFilter(own_loggers_only)
    try:
        yield
    finally:
        root.removeFilter(own_loggers_only)


def _calibration_reader(quantization: Any, images: torch.Tensor, progress: Progress | None) -> Any:
    """A CalibrationDataReader handing ONNX Runtime one uint8 image at a time, as the deployment takes them."""

    class ImageReader(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.next_index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.next_index >= len(images):
                return None
            batch = images[self.next_index:self.next_index + 1].contiguous().numpy()
            self.next_index += 1
            if progress is not None:
                progress(self.next_index, len(images))
            return {"image": batch}

        def rewind(self) -> None:
            self.next_index = 0

    return ImageReader()


def calibration_images(loader: Any, limit: int = 300) -> torch.Tensor:
    """Up to `limit` of a loader's images, spread evenly over its items, as the deployment input.

    Evenly spread, not the first ones: a folder dataset lists its items class by class, and activation
    ranges measured on a few classes only would clip the others'. Each image is prepared as the export's
    input is: item resize, then the centre crop at the loader's size (uint8 [N, 3, S, S]); undecodable
    items are left out.

    Example:
        >>> train_images = calibration_images(learn.dls.train, limit=300)  # doctest: +SKIP
    """
    count = len(loader.dataset)
    chosen = sorted({int(i) for i in np.linspace(0, count - 1, num=min(limit, count))}) if count else []
    return deployment_input(loader, chosen)[1]


def quantize_onnx_static(path: str | Path, calibration: torch.Tensor, target: str | Path | None = None,
                         progress: Progress | None = None) -> Path:
    """An int8 copy of an ONNX export by static post-training quantization (QDQ, per-channel weights).

    Args:
        path: The float32 model.onnx (uint8 image in, probabilities out).
        calibration: uint8 [N, 3, S, S] images as the deployment takes them (training images), from
            which the activation ranges are measured.
        target: Where to write (default: model.int8.onnx beside `path`).
        progress: Called with (done, total) as calibration images are used.

    Raises:
        ImportError: onnxruntime is missing (the message has the pip line).
        ValueError: `calibration` holds no image.

    Example:
        >>> quantize_onnx_static("deploy/model.onnx", train_images)  # doctest: +SKIP
        PosixPath('deploy/model.int8.onnx')
    """
    quantization = _onnxruntime_quantization()
    if len(calibration) == 0:
        raise ValueError("ONNX int8 quantization needs calibration images; none were given.")
    path = Path(path)
    target = Path(target) if target is not None else path.with_name(f"{path.stem}.int8.onnx")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as scratch, _quiet_onnxruntime():
        # Shape inference and graph optimisation first (ONNX Runtime's advice): folded Conv+BN and known
        # shapes quantize better and give fewer QDQ pairs.
        prepared = Path(scratch) / "prepared.onnx"
        quantization.shape_inference.quant_pre_process(str(path), str(prepared))
        with atomic_path(target) as tmp:
            quantization.quantize_static(
                str(prepared), str(tmp), _calibration_reader(quantization, calibration, progress),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                # The final Softmax/Sigmoid stays float: probabilities keep their resolution near 0 and 1.
                op_types_to_quantize=["Conv", "MatMul", "Gemm", "Add", "Mul", "GlobalAveragePool", "Relu", "Clip"],
                extra_options={"CalibMovingAverage": False})
    return target


def quantize(path: str | Path, fmt: str, calibration: torch.Tensor, progress: Progress | None = None) -> Path:
    """The int8 copy of an export in `fmt` ("onnx" or "openvino"), calibrated on `calibration`.

    Raises:
        ValueError: `fmt` has no int8 variant (TorchScript), or no calibration image was given.

    Example:
        >>> quantize("deploy/model.onnx", "onnx", train_images)  # doctest: +SKIP
        PosixPath('deploy/model.int8.onnx')
    """
    if fmt == "onnx":
        return quantize_onnx_static(path, calibration, progress=progress)
    if fmt == "openvino":
        quantized = quantize_openvino_int8(path, calibration)
        if progress is not None:
            progress(len(calibration), len(calibration))
        return quantized
    raise ValueError(f"int8 exists for {' and '.join(INT8_METHODS)}, not {fmt!r}.")


def _timing_runner(path: Path, fmt: str) -> Callable[[np.ndarray], Any]:
    """`load_deployed`'s runner, but an ONNX Runtime session whose threads do not spin-wait after a call:
    spinning threads of one session would take the CPU from the next in the interleaved timing."""
    if fmt != "onnx":
        return load_deployed(path, fmt)
    onnxruntime = importlib.import_module("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0]


def measure_latency(paths: dict[str, Path], fmt: str, image: np.ndarray, repeats: int = 200) -> dict[str, float]:
    """Median milliseconds of one call on `image` (uint8 [1, 3, S, S]) for each file, runs interleaved.

    Every file is loaded and run a few times before timing (first calls allocate and pick kernels);
    then the files take turns, in an order reversed every round, so a busy machine slows them alike.

    Example:
        >>> files = {"float32": Path("model.onnx"), "int8": Path("model.int8.onnx")}
        >>> measure_latency(files, "onnx", batch)  # doctest: +SKIP
        {'float32': 4.1, 'int8': 2.7}
    """
    runners = {name: _timing_runner(path, fmt) for name, path in paths.items()}
    for run in runners.values():
        for _ in range(5):
            run(image)
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    for round_ in range(repeats):
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            run(image)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class Int8Comparison:
    """An int8 file measured against its float32 original on the same validation images.

    Attributes:
        files: The int8 files (model.int8.onnx, or model.int8.xml and .bin).
        unknown_changed: The share of the validation images whose unknown flag (ood_score above the
            threshold) differs between int8 and float32; None for a model without an unknown score.
        recommended: "int8" or "float32": the file to deploy.
        reason: Why, in one sentence.
    """

    files: list[Path]
    method: str
    calibration_images: int
    max_difference: float
    accuracy_fp32: float | None
    accuracy_int8: float | None
    latency_ms_fp32: float
    latency_ms_int8: float
    size_mib_fp32: float
    size_mib_int8: float
    recommended: str
    reason: str
    unknown_changed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": [path.name for path in self.files]}


def accuracy(probs: np.ndarray, targets: torch.Tensor, multi_label: bool) -> float | None:
    """Accuracy (multi-label: of every item-class decision at 0.5) of labelled items; None if none are.

    Example:
        >>> accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]), multi_label=False)
        0.5
    """
    if multi_label:
        labelled = ~torch.isnan(targets).any(dim=1)
        if not labelled.any():
            return None
        return float(((torch.from_numpy(probs) >= 0.5) == (targets > 0.5))[labelled].float().mean())
    labelled = targets >= 0
    if not labelled.any():
        return None
    return float((torch.from_numpy(probs).argmax(dim=1) == targets)[labelled].float().mean())


def _mebibytes(paths: list[Path]) -> float:
    return sum(path.stat().st_size for path in paths) / 2**20


def recommend(accuracy_fp32: float | None, accuracy_int8: float | None, fp32_ms: float,
              int8_ms: float, unknown_changed: float | None = None) -> tuple[str, str]:
    """Which file to deploy, "int8" or "float32", and why: int8 only when it keeps accuracy and the unknown
    flags (`unknown_changed`: the share of images flagged differently, None without a score) and is faster.

    Example:
        >>> recommend(0.82, 0.73, 4.0, 40.0)
        ('float32', 'int8 loses 9.0 accuracy points (more than 1); use the float32 model')
    """
    speed = f"{int8_ms:.1f} ms per image vs {fp32_ms:.1f} ms"
    if accuracy_fp32 is not None and accuracy_int8 is not None and accuracy_fp32 - accuracy_int8 > MAX_ACCURACY_DROP:
        return "float32", (f"int8 loses {100 * (accuracy_fp32 - accuracy_int8):.1f} accuracy points (more than "
                           f"{100 * MAX_ACCURACY_DROP:.0f}); use the float32 model")
    if unknown_changed is not None and unknown_changed > MAX_UNKNOWN_CHANGE:
        return "float32", (f"int8 changes the unknown flag of {100 * unknown_changed:.1f}% of the validation images "
                           f"(more than {100 * MAX_UNKNOWN_CHANGE:.0f}%); use the float32 model")
    if int8_ms >= fp32_ms:
        return "float32", f"int8 is not faster here ({speed}); use the float32 model"
    if accuracy_fp32 is None or accuracy_int8 is None:
        return "int8", f"int8 is faster ({speed}); its accuracy was not measured (no labelled images)"
    return "int8", (f"int8 is faster ({speed}) and within {100 * MAX_ACCURACY_DROP:.0f} accuracy point "
                    f"({100 * (accuracy_int8 - accuracy_fp32):+.1f})")


def compare_int8(learner: Any, files: list[Path], fmt: str, images: torch.Tensor, targets: torch.Tensor | None,
                 calibration: torch.Tensor, multi_label: bool, fp32_probs: np.ndarray,
                 progress: Progress | None = None) -> Int8Comparison:
    """Quantize the float32 export `files` (calibrated on `calibration`) and measure it against them.

    Args:
        learner: The PyTorch model the export came from (the int8 file is checked against it).
        files: The float32 export's files, the model first.
        fmt: "onnx" or "openvino".
        images: uint8 validation images [N, 3, S, S]; `targets` their labels (None: accuracy not measured).
        calibration: uint8 training images as the deployment takes them.
        multi_label: The model's task decides how accuracy is counted.
        fp32_probs: The float32 file's probabilities on `images` (from its check).
        progress: Called with (done, total) as calibration images are used.

    Example:
        >>> comparison = compare_int8(learn, files, "onnx", images, targets,  # doctest: +SKIP
        ...                           train_images, False, probs)
        >>> comparison.recommended, comparison.reason  # doctest: +SKIP
        ('int8', 'int8 is faster (2.1 ms per image vs 3.9 ms) and within 1 accuracy point (-0.5)')
    """
    quantized = quantize(files[0], fmt, calibration, progress=progress)
    int8_files = [quantized] + ([quantized.with_suffix(".bin")] if fmt == "openvino" else [])
    # The float32 file matches PyTorch within ~1e-5, so int8's flags are compared with PyTorch's, in the same pass.
    difference, int8_probs, changed = check_export(learner, quantized, fmt, images)
    before = None if targets is None else accuracy(fp32_probs, targets, multi_label)
    after = None if targets is None else accuracy(int8_probs, targets, multi_label)
    latency = measure_latency({"float32": files[0], "int8": quantized}, fmt, images[:1].contiguous().numpy())
    recommended, reason = recommend(before, after, latency["float32"], latency["int8"], changed)
    return Int8Comparison(int8_files, INT8_METHODS[fmt], len(calibration), difference, before, after,
                          latency["float32"], latency["int8"], _mebibytes(files), _mebibytes(int8_files),
                          recommended, reason, changed)

