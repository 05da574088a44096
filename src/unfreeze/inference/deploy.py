"""Deployment exports: ONNX, TorchScript and OpenVINO files that need no unfreeze code to run.

Every format has one contract: input `image`, a uint8 RGB batch [N, 3, H, W] already resized to the
model's size as the validation transforms do; output `probabilities` [N, C] (softmax for single-label
models, a sigmoid per class for multi-label ones), or `values` [N, K] for a regression model (its numbers,
in the order of its output names). Scaling to [0, 1] and the normalization are part of the graph, so a
deployment only decodes and resizes images.

    DIR/model.onnx                  onnxruntime.InferenceSession(...).run(None, {"image": batch})
    DIR/model.pt                    torch.jit.load(...)(torch.from_numpy(batch))
    DIR/model.xml + DIR/model.bin   openvino.Core().compile_model(...)(batch)

`check_export` runs a written file on real images and compares it with the PyTorch model;
`quantize_onnx_int8` writes an int8 copy with ONNX Runtime's dynamic quantization, and
`quantize_openvino_int8` one with NNCF's post-training quantization (calibrated on given images).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from unfreeze._io import atomic_path
from unfreeze.data import DataError
from unfreeze.inference.export import ExportError
from unfreeze.inference.predict import Predictor, trust_of
from unfreeze.tasks import MultiLabel, Regression
from unfreeze.trust import Trust
from unfreeze.trust.graph import TrustedModel

__all__ = ["FORMATS", "INT8_FORMATS", "DeployedModel", "ExportCheck", "check_export", "deployable_module",
           "export_deployable", "graph_outputs", "load_deployed", "load_deployed_outputs", "quantize_int8",
           "quantize_onnx_int8", "quantize_openvino_int8", "validation_images"]

FORMATS = {"onnx": ("model.onnx",), "torchscript": ("model.pt",), "openvino": ("model.xml", "model.bin")}
_HINTS = {"onnx": "pip install 'unfreeze[onnx]'", "openvino": "pip install 'unfreeze[openvino]'"}
# The formats with an int8 variant, and how it is made (named in the CLI output and the model card).
INT8_FORMATS = {"onnx": "ONNX Runtime dynamic quantization (int8 weights)",
                "openvino": "NNCF post-training quantization (int8 weights and activations)"}


class _UInt8Classifier(nn.Module):
    """uint8 [N, 3, H, W] → probabilities [N, C] (and ood_score [N] with a fitted score), with scaling,
    normalization, the calibrated temperature and activation inside."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], multi_label: bool,
                 trust: Trust | None = None) -> None:
        super().__init__()
        self.model = TrustedModel(model, trust if trust is not None else Trust(), multi_label)
        self.multi_label = multi_label
        # Folding /255 into the normalization: (x / 255 - mean) / std = x * scale + shift.
        std_tensor = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_tensor))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_tensor)

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(image.float() * self.scale + self.shift)
        return outputs[1] if len(outputs) == 2 else (outputs[1], outputs[2])


class _UInt8Regressor(nn.Module):
    """uint8 [N, 3, H, W] → values [N, K]: a regression model's numbers, with scaling and normalization inside."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        std_tensor = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_tensor))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_tensor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image.float() * self.scale + self.shift).float()


def deployable_module(learner: Predictor) -> nn.Module:
    """The learner's model wrapped to the deployment contract (uint8 in; probabilities, or a regression's
    values, out), on the CPU.

    Example:
        >>> module = deployable_module(learn)  # doctest: +SKIP
        >>> module(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).sum()  # doctest: +SKIP
        tensor(1.)
    """
    model = copy.deepcopy(learner.model).float().cpu().eval()
    valid = learner.dls.valid
    if isinstance(learner.task, Regression):
        return _UInt8Regressor(model, list(valid.mean), list(valid.std)).eval()
    return _UInt8Classifier(model, list(valid.mean), list(valid.std), isinstance(learner.task, MultiLabel),
                            copy.deepcopy(trust_of(learner))).eval()


def graph_outputs(task: Any, scored: bool) -> list[str]:
    """The graph's output names: ["values"] for a regression task, else ["probabilities"] and, with a fitted
    unknown score, "ood_score".

    Example:
        >>> graph_outputs(MultiLabel(), scored=True)
        ['probabilities', 'ood_score']
    """
    if isinstance(task, Regression):
        return ["values"]
    return ["probabilities", *(["ood_score"] if scored else [])]


def _require(module: str, fmt: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"--format {fmt} needs the package {module}: {_HINTS[fmt]} ({error}).") from error


def _metadata(learner: Predictor) -> dict[str, Any]:
    """What a deployment needs to know besides the graph, stored inside the ONNX and OpenVINO files."""
    dataset = learner.dls.valid.dataset
    trust = trust_of(learner).metadata()
    scored = trust["ood"] is not None
    regression = isinstance(learner.task, Regression)
    output = ("values [N, K], in the order of vocab (the output names)" if regression
              else "probabilities [N, C]" + (", ood_score [N]" if scored else ""))
    return {"vocab": list(learner.dls.vocab), "task": learner.task.config(), "size": int(learner.dls.size),
            "item_size": int(dataset.item_size), "resize_method": dataset.resize_method,
            "input": "uint8 RGB [N, 3, size, size]", "output": output,
            "outputs": graph_outputs(learner.task, scored),
            "temperature": None if regression else trust["temperature"],
            "unknown_threshold": trust["ood"]["threshold"] if scored else None}


def export_deployable(learner: Predictor, directory: str | Path, fmt: str) -> list[Path]:
    """Write the model in `fmt` ("onnx", "torchscript" or "openvino") into `directory`.

    Files are written under temporary names and renamed when complete, so an interrupted export never
    leaves a half-written model.

    Returns:
        The files written (one, or OpenVINO's .xml and .bin).

    Raises:
        ValueError: An unknown format.
        ImportError: The format's package is not installed; the message gives the pip line.

    Example:
        >>> export_deployable(learn, "deploy", "onnx")  # doctest: +SKIP
        [PosixPath('deploy/model.onnx')]
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module = deployable_module(learner)
    size = int(learner.dls.size)
    example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    paths = [directory / name for name in FORMATS[fmt]]
    with warnings.catch_warnings():
        # The tracers' deprecation notices (torch.jit, TorchScript-based ONNX) are torch's concern.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        {"onnx": _write_onnx, "torchscript": _write_torchscript, "openvino": _write_openvino}[fmt](
            module, example, paths, _metadata(learner))
    return paths


def _write_onnx(module: nn.Module, example: torch.Tensor, paths: list[Path], metadata: dict[str, Any]) -> None:
    onnx = _require("onnx", "onnx")
    _require("onnxruntime", "onnx")
    outputs = metadata["outputs"]
    with atomic_path(paths[0]) as tmp:
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=17, input_names=["image"],
                          output_names=outputs, dynamic_axes={name: {0: "batch"} for name in ["image", *outputs]})
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = "unfreeze", json.dumps(metadata)
        onnx.save(graph, str(tmp))


def _write_torchscript(module: nn.Module, example: torch.Tensor, paths: list[Path], metadata: dict[str, Any]) -> None:
    traced = torch.jit.trace(module, (example,), check_trace=False)
    # Through a Python file: given a path, torch writes from C++ and a full disk ends in a C++ error.
    with atomic_path(paths[0]) as tmp, tmp.open("wb") as handle:
        torch.jit.save(traced, handle, _extra_files={"unfreeze.json": json.dumps(metadata)})


def _write_openvino(module: nn.Module, example: torch.Tensor, paths: list[Path], metadata: dict[str, Any]) -> None:
    openvino = _require("openvino", "openvino")
    size = example.shape[-1]
    from openvino.frontend import OpConversionFailure

    try:
        converted = openvino.convert_model(module, example_input=example,
                                           input=[([-1, 3, size, size], openvino.Type.u8)])
    except OpConversionFailure as error:
        failed = [line.strip("- ") for line in str(error).splitlines() if line.startswith("-- ")]
        raise ExportError(f"OpenVINO cannot convert this model at {size} px ({'; '.join(failed)[:300]}). Export "
                          "--format onnx instead (OpenVINO also runs .onnx files)") from None
    converted.set_rt_info(json.dumps(metadata), ["unfreeze"])
    _save_openvino(openvino, converted, paths[0])


def _save_openvino(openvino: Any, model: Any, xml: Path) -> list[Path]:
    """Save an OpenVINO model as `xml` and its .bin, both complete or neither replaced."""
    paths = [xml, xml.with_suffix(".bin")]
    # OpenVINO names the .bin after the .xml: both are written in a temporary folder, then moved.
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".openvino-") as scratch:
        openvino.save_model(model, str(Path(scratch) / xml.name), compress_to_fp16=False)
        for path in reversed(paths):  # the .bin first: an .xml is never left pointing at an old .bin
            (Path(scratch) / path.name).replace(path)
    return paths


DeployedModel = Callable[[np.ndarray], np.ndarray]


def load_deployed(path: str | Path, fmt: str) -> DeployedModel:
    """A function uint8 batch → probabilities (a regression's values) running an exported file with its own
    runtime.

    Example:
        >>> run = load_deployed("deploy/model.onnx", "onnx")  # doctest: +SKIP
        >>> run(np.zeros((1, 3, 224, 224), np.uint8)).shape  # doctest: +SKIP
        (1, 10)
    """
    run = load_deployed_outputs(path, fmt)
    return lambda batch: run(batch)[0]


def load_deployed_outputs(path: str | Path, fmt: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function uint8 batch → every output of an exported file: [probabilities], [probabilities, ood_score],
    or a regression's [values].

    Example:
        >>> probs, ood_score = load_deployed_outputs("deploy/model.onnx", "onnx")(batch)  # doctest: +SKIP
    """
    path = str(path)
    if fmt == "onnx":
        onnxruntime = _require("onnxruntime", "onnx")
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda batch: list(session.run(None, {"image": batch}))
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice: still the way to load
            scripted = torch.jit.load(path, map_location="cpu").eval()

        def run_torchscript(batch: np.ndarray) -> list[np.ndarray]:
            with torch.no_grad():
                outputs = scripted(torch.from_numpy(batch))
            return [output.numpy() for output in (outputs if isinstance(outputs, tuple) else (outputs,))]

        return run_torchscript
    if fmt == "openvino":
        openvino = _require("openvino", "openvino")
        # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise run in bf16 by default.
        compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda batch: [np.asarray(output) for output in compiled(batch).values()]
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")


class ExportCheck(NamedTuple):
    """What `check_export` found.

    Attributes:
        difference: The largest absolute difference of any probability (a regression's value) or unknown score
            from PyTorch's.
        probabilities: The file's probabilities [N, C] (a regression's values [N, K]).
        unknown_changed: The share of the images whose unknown flag (ood_score above the threshold) differs
            from PyTorch's; None for a model without an unknown score, or no image.
    """

    difference: float
    probabilities: np.ndarray
    unknown_changed: float | None


def check_export(learner: Predictor, path: str | Path, fmt: str, images: torch.Tensor,
                 batch_size: int = 32) -> ExportCheck:
    """Run an exported file on uint8 `images` [N, 3, H, W]; compare with the PyTorch model.

    Example:
        >>> difference, probs, _ = check_export(learn, "deploy/model.onnx", "onnx", images)  # doctest: +SKIP
        >>> difference < 1e-4  # doctest: +SKIP
        True
    """
    module = deployable_module(learner)
    deployed = load_deployed_outputs(path, fmt)
    trust = trust_of(learner)
    largest, outputs, changed = 0.0, [], 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].contiguous()
        with torch.no_grad():
            expected = module(batch)
        expected = [output.numpy() for output in (expected if isinstance(expected, tuple) else (expected,))]
        found = deployed(batch.numpy())
        outputs.append(found[0])
        for got, wanted in zip(found, expected, strict=True):
            largest = max(largest, float(np.abs(got - wanted).max(initial=0.0)))
        if trust.has_score:  # the second output is the ood_score
            changed += int(np.sum((found[1] > trust.threshold) != (expected[1] > trust.threshold)))
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, len(learner.dls.vocab)), np.float32)
    return ExportCheck(largest, probabilities, changed / len(images) if trust.has_score and len(images) else None)


def validation_images(loader: Any, limit: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `limit` of a loader's images as the deployment input (uint8 [N, 3, size, size]) and targets.

    Undecodable items are left out. The item-resized images are centre-cropped to the loader's size, as
    the validation transforms do.

    Example:
        >>> images, targets = validation_images(learn.dls.valid, limit=64)  # doctest: +SKIP
    """
    kept, images = deployment_input(loader, range(min(len(loader.dataset), limit)))
    return images, loader.dataset.targets[kept]


def deployment_input(loader: Any, indices: Iterable[int]) -> tuple[list[int], torch.Tensor]:
    """The decodable ones of `indices` and their images as a deployment takes them: item resize, then the
    centre crop at the loader's size (uint8 [N, 3, size, size], as the validation transforms do).

    Example:
        >>> kept, images = deployment_input(learn.dls.valid, range(8))  # doctest: +SKIP
    """
    dataset, size = loader.dataset, int(loader.size)
    kept = []
    for index in indices:
        try:
            dataset.image(index)
        except DataError:
            continue
        kept.append(index)
    images = loader.decode_uint8(kept)
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    return kept, images[:, :, top:top + size, left:left + size].contiguous()


def quantize_onnx_int8(path: str | Path, target: str | Path | None = None) -> Path:
    """An int8 copy of an ONNX export (ONNX Runtime's dynamic quantization of the weights).

    Example:
        >>> quantize_onnx_int8("deploy/model.onnx")  # doctest: +SKIP
        PosixPath('deploy/model.int8.onnx')
    """
    _require("onnxruntime", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    target = Path(target) if target is not None else path.with_name(f"{path.stem}.int8.onnx")
    with atomic_path(target) as tmp, _quiet_quantizer():
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
    return target


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Hold back what the quantizers print while they run: ONNX Runtime's advice on the root logger (a
    URL about static quantization, which this dynamic one does not use), NNCF's log lines and progress
    bars (rich, on stdout), and torch's "No CUDA runtime" notice when NNCF imports torch's extension
    builder. The command prints its own summary of the result."""
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in loggers]
    advice = logging.Filter("onnxruntime")  # passes onnxruntime's own loggers, drops the root logger's lines
    root.addFilter(advice)
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        root.removeFilter(advice)


def quantize_openvino_int8(path: str | Path, calibration: torch.Tensor, target: str | Path | None = None) -> Path:
    """An int8 copy of an OpenVINO export (model.int8.xml + .bin), by NNCF's post-training quantization.

    Unlike ONNX Runtime's dynamic quantization, OpenVINO's int8 quantizes activations too, so it needs
    images to measure their ranges: `calibration`, uint8 [N, 3, S, S] as the deployment takes them (the
    training images: the validation images then measure the accuracy change fairly).

    Raises:
        ImportError: nncf or openvino is missing (the message has the pip line).
        ValueError: `calibration` holds no image.

    Example:
        >>> quantize_openvino_int8("deploy/model.xml", train_images)  # doctest: +SKIP
        PosixPath('deploy/model.int8.xml')
    """
    openvino = _require("openvino", "openvino")
    with _quiet_quantizer():
        nncf = _require("nncf", "openvino")
    if len(calibration) == 0:
        raise ValueError("OpenVINO int8 quantization needs calibration images; none were given.")
    path = Path(path)
    target = Path(target) if target is not None else path.with_name(f"{path.stem}.int8.xml")
    batches = [calibration[index:index + 1].numpy() for index in range(len(calibration))]
    with _quiet_quantizer():
        quantized = nncf.quantize(openvino.Core().read_model(str(path)), nncf.Dataset(batches),
                                  subset_size=len(batches))
    return _save_openvino(openvino, quantized, target)[0]


def quantize_int8(path: str | Path, fmt: str, calibration: torch.Tensor) -> Path:
    """The int8 copy of an export in `fmt` (see `INT8_FORMATS`); ONNX's ignores `calibration`.

    Raises:
        ValueError: `fmt` has no int8 variant (TorchScript).

    Example:
        >>> quantize_int8("deploy/model.onnx", "onnx", train_images)  # doctest: +SKIP
        PosixPath('deploy/model.int8.onnx')
    """
    if fmt == "onnx":
        return quantize_onnx_int8(path)
    if fmt == "openvino":
        return quantize_openvino_int8(path, calibration)
    raise ValueError(f"int8 exists for {' and '.join(INT8_FORMATS)}, not {fmt!r}.")
