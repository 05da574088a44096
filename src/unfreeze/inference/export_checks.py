"""What an export file must hold before anything is built from it: bounded metadata, fitting weights.

An `.unfreeze` file may come from anywhere. Every metadata value that sizes an allocation (classes,
input channels, image sizes, parameter groups) or enters the arithmetic of a prediction (mean, std,
augmentation, threshold) is checked against a bound; the stored tensors are checked against the
architecture (names, shapes, dtypes) from the safetensors header, before their bytes are read; and
weights that hold NaN or infinities are refused. Each function returns the problems it found, as
phrases, so that `export.py` reports all of them at once with the file's name.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from unfreeze.data.transforms import MAX_SIZE, RESIZE_METHODS
from unfreeze.models import HEAD_KINDS
from unfreeze.trust import Trust

__all__ = ["MAX_CHANNELS", "MAX_CLASSES", "metadata_problems", "non_finite_tensors", "tensor_problems"]

MAX_CLASSES = 100_000  # far above any real vocab; a larger n_out is a corrupt file, not a model to build
MAX_CHANNELS = 256  # input channels: multispectral images have tens; 10**8 would allocate gigabytes
_MAX_GROUPS = 1_000
_MAX_NAME = 1_000  # characters of a class name
_MAX_TEXT = 200  # characters of an architecture, feature or version name
_MAX_SEED = 2**63 - 1
_MAX_FEATURES = 1_000_000
_MAX_HIDDEN_LAYERS, _MAX_HIDDEN_WIDTH = 8, 16_384  # fastai head lin_ftrs: [512] by default

# safetensors' dtype codes (the header's "dtype") of the dtypes a model's state dict holds.
_CODES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
          torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64",
          torch.bool: "BOOL"}
_FLOAT_CODES = frozenset({"F16", "BF16", "F32", "F64"})  # any of them loads into a float parameter exactly enough


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: Any, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def _numbers(values: Any, count: int | None = None, max_count: int = 3) -> bool:
    return (isinstance(values, list) and 1 <= len(values) <= max_count and (count is None or len(values) == count)
            and all(_number(value, -math.inf, math.inf) for value in values))


def _dtype(entry: dict[str, Any]) -> str:
    code = entry.get("dtype")
    return code if isinstance(code, str) and len(code) <= 16 else _shown(code)


def _text(value: Any, limit: int = _MAX_TEXT) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _vocab_problems(vocab: Any) -> list[str]:
    if not (isinstance(vocab, list) and vocab and all(isinstance(name, str) for name in vocab)):
        return [f"vocab must be a non-empty list of class names, found {_shown(vocab)}"]
    if len(vocab) > MAX_CLASSES:
        return [f"vocab has {len(vocab)} classes, more than {MAX_CLASSES}"]
    problems = []
    if not all(_text(name, _MAX_NAME) for name in vocab):
        problems.append(f"every class name must have 1 to {_MAX_NAME} characters")
    repeated = sorted(name for name, count in Counter(vocab).items() if count > 1)
    if repeated:
        problems.append(f"vocab repeats {', '.join(map(_shown, repeated[:5]))}")
    return problems


def _model_problems(model: Any, n_classes: int | None) -> list[str]:
    if not isinstance(model, dict):
        return [f"model must be an object (the architecture config), found {type(model).__name__}"]
    problems = []
    n_out, head = model.get("n_out"), model.get("head")
    if not _whole(n_out, 1, MAX_CLASSES):
        problems.append(f"model.n_out must be a whole number from 1 to {MAX_CLASSES}, found {_shown(n_out)}")
    elif n_classes is not None and n_out != n_classes:
        problems.append(f"model.n_out is {n_out} but vocab has {n_classes} classes")
    checks = [
        ("arch", _text(model.get("arch")), f"a name of 1 to {_MAX_TEXT} characters"),
        ("n_in", _whole(model.get("n_in"), 1, MAX_CHANNELS), f"a whole number from 1 to {MAX_CHANNELS}"),
        ("n_groups", _whole(model.get("n_groups"), 2, _MAX_GROUPS), f"a whole number from 2 to {_MAX_GROUPS}"),
        ("input_size", _whole(model.get("input_size"), 1, MAX_SIZE), f"a whole number from 1 to {MAX_SIZE}"),
        ("mean", _numbers(model.get("mean"), max_count=MAX_CHANNELS), "a list of finite numbers"),
        ("std", _numbers(model.get("std"), max_count=MAX_CHANNELS), "a list of finite numbers"),
        ("head", isinstance(head, dict) and head.get("kind") in (*HEAD_KINDS, "custom")
         and _number(head.get("ps", 0.5), 0.0, 1.0) and _y_range_ok(head.get("y_range"))
         and _hidden_ok(head.get("hidden", [512])) and isinstance(head.get("concat_pool", True), bool),
         f"an object with kind in {HEAD_KINDS}, ps from 0 to 1, y_range null or [low, high], hidden up to "
         f"{_MAX_HIDDEN_LAYERS} widths from 1 to {_MAX_HIDDEN_WIDTH} and concat_pool true or false"),
    ]
    if "features" in model:
        checks.append(("features", _text(model["features"]), f"a name of 1 to {_MAX_TEXT} characters"))
    if "num_features" in model:
        checks.append(("num_features", _whole(model["num_features"], 1, _MAX_FEATURES),
                       f"a whole number from 1 to {_MAX_FEATURES}"))
    problems += [f"model.{key} must be {expected}, found {_shown(model.get(key))}" for key, ok, expected in checks
                 if not ok]
    return problems


def _hidden_ok(hidden: Any) -> bool:
    """The fastai head's hidden widths: a short list of bounded whole numbers, so that a crafted file cannot ask
    for a head that exhausts memory while it is built."""
    return (isinstance(hidden, list) and len(hidden) <= _MAX_HIDDEN_LAYERS
            and all(_whole(width, 1, _MAX_HIDDEN_WIDTH) for width in hidden))


def _y_range_ok(y_range: Any) -> bool:
    """A regression head's range: absent, or two finite numbers low < high."""
    if y_range is None:
        return True
    return (isinstance(y_range, list) and len(y_range) == 2 and all(_number(v, -1e30, 1e30) for v in y_range)
            and y_range[0] < y_range[1])


def _augment_problems(augment: Any) -> list[str]:
    """The augmentation settings drive test-time augmentation: out of range, they give NaN inputs."""
    if augment is None:
        return []
    if not isinstance(augment, dict):
        return [f"augment must be an object or null, found {_shown(augment)}"]
    ranges = {"flip_p": (0.0, 1.0), "p_affine": (0.0, 1.0), "p_lighting": (0.0, 1.0), "max_rotate": (0.0, 360.0),
              "max_zoom": (1.0, 10.0), "min_zoom": (0.01, 10.0), "max_lighting": (0.0, 0.49),
              "min_scale": (0.01, 1.0)}
    problems = [f"augment.{key} must be a number from {low} to {high}, found {_shown(augment[key])}"
                for key, (low, high) in ranges.items() if key in augment and not _number(augment[key], low, high)]
    if not problems and augment.get("min_zoom", 1.0) > augment.get("max_zoom", 1.1):
        problems.append(f"augment.min_zoom {augment['min_zoom']} is above max_zoom {augment.get('max_zoom', 1.1)}")
    return problems


def _task_problems(task: Any, n_classes: int | None) -> list[str]:
    if task is None:  # an export from before tasks existed: single-label
        return []
    if not isinstance(task, dict) or task.get("name") not in ("single_label", "multi_label", "regression"):
        return [f"task must be single_label, multi_label or regression, found {_shown(task)}"]
    if task["name"] == "regression":
        ok = isinstance(task.get("points", False), bool) and task.get("loss", "mse") in ("mse", "l1")
        return [] if ok else [f"task must have points true/false and loss mse or l1, found {_shown(task)}"]
    threshold = task.get("threshold", 0.5)
    if task["name"] != "multi_label" or _number(threshold, 0.0, 1.0):
        return []
    per_class = isinstance(threshold, list) and len(threshold) == n_classes
    if not (per_class and all(_number(value, 0.0, 1.0) for value in threshold)):
        return [f"task.threshold must be a number from 0 to 1, or one per class ({n_classes}), found "
                f"{_shown(threshold)}"]
    return []


def metadata_problems(metadata: dict[str, Any]) -> list[str]:
    """Every out-of-range, mistyped or inconsistent value of an export's metadata (empty if none).

    Args:
        metadata: The parsed `__metadata__["unfreeze"]` JSON, with the required keys present.

    Example:
        >>> metadata_problems({"vocab": ["a"], "model": {}, "size": 0, "item_size": 64,
        ...                    "resize_method": "crop", "mean": [0.5] * 3, "std": [0.5] * 3})[:1]
        ['model.n_out must be a whole number from 1 to 100000, found None']
    """
    vocab = metadata["vocab"]
    problems = _vocab_problems(vocab)
    problems += _model_problems(metadata["model"], len(vocab) if isinstance(vocab, list) else None)
    size, item_size = metadata["size"], metadata["item_size"]
    for key, value in (("size", size), ("item_size", item_size)):
        if not _whole(value, 1, MAX_SIZE):
            problems.append(f"{key} must be a whole number from 1 to {MAX_SIZE}, found {_shown(value)}")
    if _whole(size, 1, MAX_SIZE) and _whole(item_size, 1, MAX_SIZE) and item_size < size:
        problems.append(f"item_size {item_size} is below size {size}")
    if metadata["resize_method"] not in RESIZE_METHODS:
        problems.append(f"resize_method must be one of {RESIZE_METHODS}, found {_shown(metadata['resize_method'])}")
    for key in ("mean", "std"):
        if not _numbers(metadata[key], 3):
            problems.append(f"{key} must be 3 finite numbers, found {_shown(metadata[key])}")
    if _numbers(metadata["std"], 3) and min(metadata["std"]) <= 0:
        problems.append(f"std must be > 0, found {metadata['std']}")
    problems += _augment_problems(metadata.get("augment"))
    problems += _task_problems(metadata.get("task"), len(vocab) if isinstance(vocab, list) else None)
    if "trust" in metadata:  # absent in exports from before calibration and the unknown flag
        problems += Trust.problems(metadata["trust"])
    seed = metadata.get("seed")
    if seed is not None and not _whole(seed, 0, _MAX_SEED):
        problems.append(f"seed must be null or a whole number from 0 to 2**63 - 1, found {_shown(seed)}")
    version = metadata.get("library_version", "?")
    if not _text(version):
        problems.append(f"library_version must be a name of 1 to {_MAX_TEXT} characters, found {_shown(version)}")
    return problems


def tensor_problems(header: dict[str, Any], expected: dict[str, torch.Tensor]) -> list[str]:
    """How the tensors listed in a safetensors header differ from the state dict an architecture expects.

    Names must match both ways and shapes exactly. A floating tensor may be stored in any float dtype
    (F16 ... F64: loading converts it); any other tensor (counters, masks) in its own dtype. int8 weights
    in place of floats would load silently and predict nonsense.

    Args:
        header: The parsed safetensors header: name → {"dtype", "shape", "data_offsets"}.
        expected: The rebuilt model's `state_dict()`.

    Example:
        >>> tensor_problems({"w": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}}, {"w": torch.zeros(2)})
        ['w is stored as I8, expected a float dtype (F32)']
    """
    stored = {name: entry for name, entry in header.items() if name != "__metadata__"}
    problems = []
    missing = [name for name in expected if name not in stored]
    unexpected = [name for name in stored if name not in expected]
    if missing:
        problems.append(f"{len(missing)} tensor(s) of the architecture are missing, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) do not belong to the architecture, e.g. "
                        f"{', '.join(map(_shown, unexpected[:3]))}")
    for name, tensor in expected.items():
        entry = stored.get(name)
        if not isinstance(entry, dict):
            continue
        code, shape = _CODES.get(tensor.dtype, str(tensor.dtype)), list(tensor.shape)
        if entry.get("shape") != shape:
            problems.append(f"{name} has shape {_shown(entry.get('shape'))}, expected {shape}")
        if tensor.is_floating_point() and entry.get("dtype") not in _FLOAT_CODES:
            problems.append(f"{name} is stored as {_dtype(entry)}, expected a float dtype ({code})")
        elif not tensor.is_floating_point() and entry.get("dtype") != code:
            problems.append(f"{name} is stored as {_dtype(entry)}, expected {code}")
    return problems


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors of `state` that hold NaN or an infinity.

    Example:
        >>> non_finite_tensors({"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(1)})
        ['w']
    """
    return [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
