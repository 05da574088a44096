"""Predicting through ONNX Runtime or OpenVINO instead of eager PyTorch, with the same functions.

`runtime_predictor(learner, model_file, runtime)` gives a `Predictor` (the protocol every function of
unfreeze.inference takes) whose model runs in the chosen runtime: `predict_batch`, `tta`, `get_preds`
and the server use it unchanged, so rows, JSON and batching are the same. The network (normalized
float images in, batch axis dynamic) is converted to ONNX once and cached beside the
export (`.model.runtime.onnx`, with a JSON note of the export's size and fingerprint it was made from,
and of the converted file's own: a new export, or a damaged cache, is converted again). OpenVINO reads
the same ONNX file. Before use, the runtime's probabilities are compared with PyTorch's on seeded random
images; a runtime that disagrees by more than 1e-3 is refused.

Where the model ends in its classifier (`nn.Linear`, as vision_learner's heads do), the runtime computes
everything before it and that last layer runs in PyTorch (a small matrix product): its input are the
features the unknown score compares with the training images', so the calibrated probabilities and
`unknown` / `ood_score` are the same as eager PyTorch's.

    torch     eager PyTorch (the learner itself)
    onnx      ONNX Runtime, CPU                      pip install 'unfreeze[onnx]'
    openvino  OpenVINO, CPU, float32 precision        pip install 'unfreeze[openvino]'
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unfreeze._io import atomic_path
from unfreeze.inference.export import ExportError
from unfreeze.inference.predict import trust_of
from unfreeze.trust import FeatureTap, Trust

__all__ = ["RUNTIMES", "RuntimePredictor", "default_runtime", "installed_runtimes", "runtime_predictor"]

# Fastest first: serving efficientnet_lite0 at 128 and 224 px side by side, OpenVINO answered one client
# sooner (4.2 vs 4.9 ms, 8.1 vs 10.8 ms) and served 16 more requests a second than ONNX Runtime
# (benchmarks/results/serve_runtime_128.md, serve_runtime_224.md).
RUNTIMES = ("openvino", "onnx", "torch")
_PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "torch": ()}
_HINTS = {"onnx": "pip install 'unfreeze[onnx]'", "openvino": "pip install 'unfreeze[openvino]'"}
_TOLERANCE = 1e-3


def installed_runtimes() -> list[str]:
    """The runtimes whose packages are installed, fastest first (torch always).

    Example:
        >>> "torch" in installed_runtimes()
        True
    """
    return [name for name in RUNTIMES if all(importlib.util.find_spec(package) for package in _PACKAGES[name])]


def default_runtime() -> str:
    """The fastest installed runtime.

    Example:
        >>> default_runtime() in RUNTIMES
        True
    """
    return installed_runtimes()[0]


class _RuntimeModule(nn.Module):
    """An nn.Module whose forward runs a compiled ONNX/OpenVINO model on the CPU: float images in, logits
    out. With a `classifier`, the runtime gives the features and the classifier (an nn.Linear, where the
    unknown score's feature hook finds it) runs in PyTorch; columns past the classifier's input are the
    pooled middle stage, passed through `mid_features` where the feature tap finds them."""

    def __init__(self, run: Any, arch: str, n_out: int, classifier: nn.Linear | None = None) -> None:
        super().__init__()
        self._run, self.arch, self.n_out = run, arch, n_out
        self.classifier = classifier
        self.mid_features = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.detach().float().cpu().contiguous().numpy()
        outputs = torch.from_numpy(np.ascontiguousarray(self._run(batch), dtype=np.float32))
        if self.classifier is None:
            return outputs
        width = self.classifier.in_features
        if outputs.shape[1] > width:
            self.mid_features(outputs[:, width:])
        return self.classifier(outputs[:, :width])


class _FeaturesOut(nn.Module):
    """The network up to its classifier, returning [its features | the pooled middle stage] (`FeatureTap`):
    what the runtime computes so that the unknown score can read both parts."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self._tap = FeatureTap(network)
        self._tap.attach()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._tap.clear()
        self.network(images)
        features = self._tap.features()
        self._tap.clear()
        return features


def _split_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear | None]:
    """(the network up to its classifier, the classifier) on the CPU in float32, when the model's head ends
    in an nn.Linear; else (the whole network, None). The network returns the features the unknown score
    reads (`_FeaturesOut`)."""
    model = copy.deepcopy(model).float().cpu().eval()
    head = getattr(model, "head", None)
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        classifier = head[-1]
        head[-1] = nn.Linear(classifier.in_features, classifier.in_features, bias=False)  # its input, for the tap
        with torch.no_grad():
            head[-1].weight.copy_(torch.eye(classifier.in_features))
        return _FeaturesOut(model), classifier
    return model, None


@dataclass
class RuntimePredictor:
    """A `Predictor` whose model runs in `runtime`; the learner's data, task and seed otherwise.

    Attributes:
        runtime: "onnx" or "openvino".
        max_difference: The largest probability difference from PyTorch in the check.
        trust: The learner's temperature and unknown score (the score only where the classifier runs in
            PyTorch, see the module's docstring).
    """

    model: nn.Module
    dls: Any
    task: Any
    seed: int | None
    runtime: str
    max_difference: float
    trust: Trust = field(default_factory=Trust)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(model_file: Path) -> dict[str, Any]:
    return {"export": model_file.name, "bytes": model_file.stat().st_size, "sha256": _sha256(model_file)}


def _compiled_onnx(learner: Any, model_file: Path, network: nn.Module, runtime: str) -> Any:
    """The network as ONNX compiled for `runtime`, converted beside `model_file` only when the export changed
    since (converted every time when the export's folder is read-only: in a temporary folder, removed once
    compiled, as the runtime holds the model in memory)."""
    try:
        onnx_path = _convert(learner, model_file, network, model_file.with_name(f".{model_file.stem}.runtime.onnx"))
    except OSError:
        with tempfile.TemporaryDirectory(prefix="unfreeze-runtime-") as folder:
            return _compile(_convert(learner, model_file, network, Path(folder) / "model.onnx"), runtime)
    return _compile(onnx_path, runtime)


def _convert(learner: Any, model_file: Path, network: nn.Module, onnx_path: Path) -> Path:
    note = onnx_path.with_suffix(".json")
    # What the graph ends in is part of the fingerprint: a cache from before the split is converted again.
    fingerprint = {**_fingerprint(model_file),
                   "graph": "features+middle" if isinstance(network, _FeaturesOut) else "logits"}
    try:
        # The note also holds the converted file's own digest: a cache cut short or altered since (a full
        # disk, a copy interrupted) is converted again rather than blamed on the model.
        if onnx_path.is_file() and json.loads(note.read_text()) == {**fingerprint, "onnx_sha256": _sha256(onnx_path)}:
            return onnx_path
    except (OSError, ValueError):
        pass  # no readable note: convert again
    size = int(learner.dls.size)
    example = torch.zeros(1, 3, size, size)
    with atomic_path(onnx_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        torch.onnx.export(network, (example,), str(tmp), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    with atomic_path(note) as tmp:
        tmp.write_text(json.dumps({**fingerprint, "onnx_sha256": _sha256(onnx_path)}))
    return onnx_path


def _compile(path: Path, runtime: str) -> Any:
    if runtime == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # No spin-waiting after a call: decoding and resizing the next images (torch, in this process)
        # needs those cores, and in a server they would spin between every request.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda batch: session.run(None, {"images": batch})[0]
    import openvino

    # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise run in bf16 by default.
    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda batch: np.asarray(compiled(batch)[0])


def runtime_predictor(learner: Any, model_file: str | Path, runtime: str | None = None) -> Any:
    """`learner` itself for "torch", else a `RuntimePredictor` running its network in `runtime`.

    Args:
        learner: A learner from `load_learner` (its model, data and task).
        model_file: Its .unfreeze export: the converted network is cached beside it.
        runtime: "torch", "onnx", "openvino", or None for the fastest installed one that runs this model
            (a runtime that cannot convert it or disagrees with PyTorch is passed over with a warning
            naming why; PyTorch is the last resort).

    Raises:
        ValueError: An unknown runtime.
        ImportError: The runtime's package is missing (the message has the pip line).
        ExportError: The runtime cannot convert or compile the network (the message has its reason), or its
            probabilities differ from PyTorch's by more than 1e-3.

    Example:
        >>> predictor = runtime_predictor(load_learner("runs/pets/model.unfreeze"),  # doctest: +SKIP
        ...                               "runs/pets/model.unfreeze")
        >>> rows = list(predict_batch(predictor, "photos/"))  # doctest: +SKIP
    """
    if runtime is None:
        return _fastest_that_runs(learner, model_file)
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}.")
    if runtime == "torch":
        return learner
    if runtime not in installed_runtimes():
        raise ImportError(f"--runtime {runtime} needs {' and '.join(_PACKAGES[runtime])}: {_HINTS[runtime]}.")
    network, classifier = _split_classifier(learner.model)
    try:
        compiled = _compiled_onnx(learner, Path(model_file), network, runtime)
    except Exception as error:  # the converter's or the compiler's own type, its message a C++ log
        raise ExportError(f"{runtime} cannot run this model ({_failure_reason(error)}). Use --runtime torch, or "
                          "leave --runtime out for the fastest runtime that runs it") from error
    module = _RuntimeModule(compiled, getattr(learner.model, "arch", type(learner.model).__name__),
                            int(getattr(learner.model, "n_out", len(learner.dls.vocab))), classifier)
    difference = _check(learner, module)
    if difference > _TOLERANCE:
        raise ExportError(f"{runtime} gives probabilities up to {difference:.1e} away from PyTorch's on this model "
                          f"(at most {_TOLERANCE:g} is accepted). Use --runtime torch")
    trust = trust_of(learner)
    if classifier is None and trust.has_score:  # no features to score: calibrated, but no unknown flag
        trust = Trust(temperature=trust.temperature, temperature_se=trust.temperature_se, calibration=trust.calibration)
    return RuntimePredictor(module, learner.dls, learner.task, learner.seed, runtime, difference, trust)


def _fastest_that_runs(learner: Any, model_file: str | Path) -> Any:
    """`runtime_predictor` with the first installed runtime that converts, compiles and agrees with PyTorch."""
    for runtime in installed_runtimes():
        if runtime == "torch":
            return learner
        try:
            return runtime_predictor(learner, model_file, runtime)
        except Exception as error:  # any failure of a converter or compiler: the next runtime is tried
            reason = _failure_reason(error.__cause__ or error)  # the compiler's own message, not our wrapping
            warnings.warn(f"{runtime} cannot run this model ({reason}); trying the next runtime. Choose one with "
                          "--runtime", stacklevel=3)
    return learner


def _failure_reason(error: BaseException) -> str:
    """A converter's or compiler's failure in one short line."""
    # The last line: OpenVINO's and ONNX's messages start with where in their C++ the check failed.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return lines[-1].lstrip("- ")[:200]


def _check(learner: Any, module: nn.Module, count: int = 8) -> float:
    """The largest probability difference between `module` and the learner's model on seeded random images."""
    size = int(learner.dls.size)
    images = torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    model = learner.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = learner.task.activation(model(images.to(learner.device)).float().cpu())
    finally:
        model.train(was_training)
    with torch.no_grad():
        found = learner.task.activation(module(images))
    return float((found - expected).abs().max())
