"""Pickle-free export: one safetensors file with a JSON header, `load_learner`, and ONNX export.

fastai's export pickles the whole Learner: loading an untrusted file runs arbitrary code, and files
break when the library's classes move. An `.unfreeze` file is a safetensors file (tensors plus a JSON
header, parsed, never executed) whose `__metadata__["unfreeze"]` is one JSON string:

    {"format": "unfreeze", "format_version": 1, "library_version": "0.1.0",
     "model": TransferModel.config(), "vocab": [...], "size": 64, "item_size": 64,
     "resize_method": "crop", "mean": [...], "std": [...], "augment": {...} | null, "seed": 0 | null}

`load_learner` checks the bytes before handing them to safetensors, so a pickle or a truncated file is
refused with a clear message and nothing in it runs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
import struct
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unfreeze._io import atomic_path, cpu_state_dict, save_safetensors
from unfreeze._version import __version__
from unfreeze.data import IMAGE_EXTENSIONS, BatchAugment, ImageDataLoader, ImageDataLoaders, ImageDataset
from unfreeze.inference.export_checks import metadata_problems, non_finite_tensors, tensor_problems
from unfreeze.inference.predict import Predictor, trust_of
from unfreeze.models import ArchitectureNotRebuildableError, UnknownArchitectureError, model_from_config
from unfreeze.tasks import MultiLabel, Regression, task_from_config
from unfreeze.trust import TENSOR_PREFIX, Trust
from unfreeze.trust.graph import TrustedModel

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ExportArchitectureError",
    "ExportError",
    "NonFiniteWeightsWarning",
    "export",
    "export_onnx",
    "fastai_export_hint",
    "inference_dls",
    "is_pickle",
    "read_export",
    "read_export_metadata",
]

FORMAT_NAME = "unfreeze"
FORMAT_VERSION = 1
_METADATA_KEY = "unfreeze"
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit; a larger "header" is not a safetensors file
_ONNX_HINT = "ONNX export needs the optional packages onnx and onnxruntime: pip install 'unfreeze[onnx]'"


class ExportError(ValueError):
    """An export that cannot be written or read: the message says what was found and what to do."""


class ExportArchitectureError(ExportError, UnknownArchitectureError):
    """An export naming an architecture this installation cannot build (also an UnknownArchitectureError)."""


class NonFiniteWeightsWarning(UserWarning):
    """A model with NaN or infinite weights was exported: `load_learner` will refuse the file."""


def _inference_config(learner: Predictor) -> dict[str, Any]:
    model, dls = learner.model, learner.dls
    config = model.config() if hasattr(model, "config") else None
    if config is None:  # a plain nn.Module (fastai's Learner(dls, module)): only the user's code can build it
        raise ExportError(
            f"This learner's model is your own {type(model).__name__} module, which an export cannot rebuild "
            "without running your code (fastai would pickle it). Save its weights with learn.save('name'), and "
            "later build the same module, wrap it in Learner(dls, module) and call learn.load('name'). For an "
            "exportable model use vision_learner(dls, arch), create_model(arch, n_out) or xresnet50(n_out=...)."
        )
    if config["arch"].startswith("custom:") or config["head"].get("kind") == "custom":
        arch = getattr(model, "arch", type(model).__name__)
        raise ExportError(
            f"A model built from a custom module or with a custom head ({arch!r}) cannot be rebuilt from a "
            "file without running your code. Save its weights with learn.save_weights('weights.safetensors') "
            "and rebuild it with create_model(...) before load_weights, or use a timm architecture name."
        )
    valid, augment = dls.valid, getattr(dls.train, "augment", None)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model": config,
        "vocab": list(dls.vocab),
        "task": learner.task.config(),
        "size": int(dls.size),
        "item_size": int(valid.dataset.item_size),
        "resize_method": valid.dataset.resize_method,
        "mean": list(valid.mean),
        "std": list(valid.std),
        "augment": dataclasses.asdict(augment) if augment is not None else None,
        "seed": learner.seed,
        "trust": trust_of(learner).metadata(),  # temperature and unknown score (unfreeze.trust.section)
    }


def export(learner: Predictor, path: str | Path = "model.unfreeze") -> Path:
    """Write the model, its architecture config, vocab and preprocessing to one pickle-free file.

    The file is written next to `path` under a temporary name and renamed when complete, so an
    interrupted export never leaves a half-written file (and an older export stays intact).

    Returns:
        The path written.

    Raises:
        ExportError: The model was built from a custom module or head and cannot be rebuilt from a file.

    Example:
        >>> export(learn, "model.unfreeze")  # doctest: +SKIP
        PosixPath('model.unfreeze')
        >>> learn2 = load_learner("model.unfreeze")  # doctest: +SKIP
    """
    metadata = _inference_config(learner)
    state = cpu_state_dict(learner.model)
    trust_tensors = trust_of(learner).tensors()
    bad = non_finite_tensors(state)
    if bad:
        # Written anyway (the weights may be worth inspecting), but said now rather than at the first load.
        warnings.warn(f"the model exported to {path} holds NaN or infinite values in {len(bad)} of its {len(state)} "
                      f"tensors (for example {', '.join(bad[:3])}); load_learner will refuse the file. Export a "
                      "model whose training loss stayed finite.", NonFiniteWeightsWarning, stacklevel=2)
    with atomic_path(path) as tmp:
        save_safetensors({**state, **trust_tensors}, tmp, {_METADATA_KEY: json.dumps(metadata)})
    return Path(path)


def fastai_export_hint(path: str | Path, arch: str = "resnet34") -> str:
    """The steps that turn a fastai export.pkl into an unfreeze export (for error messages).

    Example:
        >>> "learn.save" in fastai_export_hint("export.pkl")
        True
    """
    return (
        f"{path} looks like a pickled fastai Learner (learn.export()). unfreeze never unpickles files: loading "
        "a pickle can run arbitrary code. Convert it in three steps: (1) in your fastai environment, "
        "learn = load_learner('export.pkl') (only for a file you trust), then "
        "torch.save(learn.model.state_dict(), 'weights.pth') or learn.save('stage') (writes models/stage.pth); "
        "(2) note learn.dls.vocab and the image size; (3) run "
        f"`unfreeze convert-fastai weights.pth --arch {arch} --vocab <class1>,<class2>,...` or, in Python, "
        f"convert_fastai('weights.pth', '{arch}', 'model.unfreeze', vocab=learn.dls.vocab)."
    )


def is_pickle(start: bytes) -> bool:
    """True when a file's first bytes open a pickle or a torch.save zip (which holds one).

    Example:
        >>> is_pickle(b"PK\\x03\\x04"), is_pickle(b"name,label")
        (True, False)
    """
    # Pickle protocols 2-5 open with PROTO (0x80) and the protocol number; torch.save writes a zip.
    return (start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or start[:4] == b"PK\x03\x04"


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors header without trusting the file (no pickle, no code)."""
    # A run directory holds config.json: its files get a hint of their own.
    run = path.parent if (path.parent / "config.json").is_file() else None
    if not path.is_file():
        if run is not None and path.name == "model.unfreeze":
            raise ExportError(f"{run} is a run directory without model.unfreeze (training writes it when it "
                              f"finishes). If the run was stopped or the file deleted, write it with: unfreeze train "
                              f"--resume {shlex.quote(str(run))} (from its checkpoint.pt; without it, train again).")
        raise ExportError(f"No export at {path}. Expected a file written by learn.export().")
    file_size = path.stat().st_size
    if file_size == 0:
        raise ExportError(f"{path} is empty (0 bytes): a write that never finished, or a file created empty. "
                          "Export the model again with learn.export().")
    with path.open("rb") as handle:
        start = handle.read(9)
        # A safetensors file opens with its header size (u64, little endian), then the JSON header "{".
        header_size = struct.unpack("<Q", start[:8])[0] if len(start) >= 8 else 0
        plausible = header_size <= _MAX_HEADER_BYTES and start[8:9] in (b"{", b"")
        # Checked after the safetensors test: a real header size may start with the byte 0x80 too.
        if is_pickle(start) and not (plausible and len(start) == 9):
            if run is not None and path.name == "checkpoint.pt":
                raise ExportError(f"{path} is the training checkpoint of a run (for unfreeze train --resume), not "
                                  f"an export. Pass the run directory {run} (its model.unfreeze).")
            kind = "a zip archive, as torch.save writes" if start[:2] == b"PK" else "a Python pickle"
            raise ExportError(
                f"{path} is {kind}, not an unfreeze export. unfreeze never unpickles files: a pickle can run "
                "arbitrary code when loaded. Load it in trusted code and re-export with learn.export(). "
                + fastai_export_hint(path)
            )
        if len(start) < 9:  # too short for a header size and a header: no export, not a cut-short one
            raise ExportError(f"{path} is not an unfreeze export ({file_size} bytes, too short for a safetensors "
                              "header); expected the file of learn.export().")
        if not plausible and path.suffix.lower() in IMAGE_EXTENSIONS:  # the arguments given in the wrong order
            raise ExportError(f"{path} is an image, not an unfreeze export. Pass the model first, then the images: "
                              "unfreeze predict RUN IMAGES, or load_learner('runs/pets').predict('cat.jpg')")
        if not plausible:
            raise ExportError(f"{path} is not an unfreeze export (no safetensors header); "
                              "expected the file of learn.export().")
        if len(start) < 8 or 8 + header_size > file_size:
            raise ExportError(f"{path} is truncated: its header needs {8 + header_size} bytes, the file has "
                              f"{file_size}. Export the model again.")
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ExportError(f"{path} is not an unfreeze export (unreadable header).") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path} is not an unfreeze export (unexpected header).")
    try:
        data_end = max((int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"),
                       default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ExportError(f"{path} is not an unfreeze export (malformed safetensors header).") from None
    if 8 + header_size + data_end > file_size:
        raise ExportError(f"{path} is truncated: its tensors need {8 + header_size + data_end} bytes, the file has "
                          f"{file_size}. Export the model again.")
    return header


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of an export, checked for format name and version; reads no tensors.

    Raises:
        ExportError: Not an unfreeze export, truncated, a pickle, or another format version.

    Example:
        >>> read_export_metadata("model.unfreeze")["vocab"]  # doctest: +SKIP
        ['cat', 'dog']
    """
    path = Path(path)
    raw = (_read_header(path).get("__metadata__") or {}).get(_METADATA_KEY)
    try:
        metadata = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ExportError(f"{path} is a safetensors file but not an unfreeze export (no '{_METADATA_KEY}' metadata). "
                          "Load bare weights with learn.load_weights().")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        advice = ("Upgrade unfreeze to load it." if isinstance(version, int) and version > FORMAT_VERSION
                  else "Re-export it with this version of unfreeze.")
        raise ExportError(
            f"{path} has export format version {version!r} (written by unfreeze "
            f"{metadata.get('library_version', '?')}); this unfreeze {__version__} reads format "
            f"version {FORMAT_VERSION}. {advice}"
        )
    missing = [key for key in ("model", "vocab", "size", "item_size", "resize_method", "mean", "std")
               if key not in metadata]
    if missing:
        raise ExportError(f"{path} lacks {', '.join(missing)} in its metadata; export the model again.")
    _validate_metadata(metadata, path)
    return metadata


def _validate_metadata(metadata: dict[str, Any], path: Path) -> None:
    """Check the values of an export's metadata before anything is built from them (export_checks).

    A hand-edited or corrupt header could otherwise ask for a billion-class head or input channels that
    take gigabytes, or give NaN inputs at every prediction. All problems are reported at once.

    Raises:
        ExportError: Listing every value that is out of range, of the wrong type or inconsistent.
    """
    problems = metadata_problems(metadata)
    if problems:
        raise ExportError(f"{path} has invalid metadata: {'; '.join(problems)}. The file was edited or is corrupt: "
                          "export the model again.")


def inference_dls(metadata: dict[str, Any], device: str | torch.device) -> ImageDataLoaders:
    """Loaders with no items that carry the vocab, task and preprocessing of an export (for test_dl,
    predict and tta)."""
    # Only the settings this version knows: a newer file may carry more, an older one fewer.
    known = {field.name for field in dataclasses.fields(BatchAugment)}
    stored = metadata.get("augment")
    augment = BatchAugment(**{k: v for k, v in stored.items() if k in known}) if isinstance(stored, dict) else None
    seed = metadata.get("seed") or 0
    task = task_from_config(metadata.get("task"))

    def empty_loader(training: bool) -> ImageDataLoader:
        dataset = ImageDataset([], metadata["vocab"], item_size=metadata["item_size"],
                               resize_method=metadata["resize_method"], task=task)
        return ImageDataLoader(dataset, 64, training=training, size=metadata["size"], augment=augment, seed=seed,
                               device=device, mean=metadata["mean"], std=metadata["std"])

    return ImageDataLoaders(empty_loader(True), empty_loader(False), seed)


def read_export(path: str | Path, with_trust: bool = False) -> Any:
    """The checked metadata and the rebuilt model (stored weights loaded) of an export; with `with_trust`
    also its `Trust` (temperature and unknown score; `Trust.absent()` for an export from before them).

    The architecture is built with random weights from the stored config, then the stored weights
    are loaded. The file is checked before anything is read into tensors and is never unpickled.
    `unfreeze.load_learner` wraps the result in a Learner.

    Raises:
        ExportError: Missing, empty, truncated, pickled, not an export, another format version, metadata
            out of bounds, weights whose names, shapes or dtypes do not fit the architecture, or NaN or
            infinite weights.
        ExportArchitectureError: The architecture is unknown to this installation's timm/torchvision.

    Example:
        >>> metadata, model = read_export("model.unfreeze")  # doctest: +SKIP
        >>> metadata, model, trust = read_export("model.unfreeze", with_trust=True)  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    metadata = read_export_metadata(path)
    try:
        task_from_config(metadata.get("task"))
    except (ValueError, AttributeError) as error:
        raise ExportError(f"{path} has a task this version cannot use: {error}") from None
    try:
        model = model_from_config(metadata["model"])
    except UnknownArchitectureError as error:
        raise ExportArchitectureError(f"{path} names an architecture this installation cannot build: {error} "
                                      "Install the timm version it was exported with.") from None
    except (ArchitectureNotRebuildableError, ValueError, KeyError, TypeError) as error:
        raise ExportError(f"{path} has a model config that cannot be rebuilt: {error}") from None
    # Names, shapes and dtypes from the header, before a byte of tensor data is read.
    section = metadata.get("trust")
    expected = {**model.state_dict(), **(Trust.expected_tensors(section) if section is not None else {})}
    problems = tensor_problems(_read_header(path), expected)
    if problems:
        raise ExportError(f"{path}: the stored weights do not fit the stored architecture "
                          f"{metadata['model']['arch']!r}: {'; '.join(problems[:6])}. Export the model again.")
    try:
        state = load_file(str(path), device="cpu")
        trust_tensors = {name: state.pop(name) for name in list(state) if name.startswith(TENSOR_PREFIX)}
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as error:
        raise ExportError(f"{path}: the stored weights do not fit the stored architecture ({error}). "
                          "Export the model again.") from None
    bad = non_finite_tensors({**state, **trust_tensors})
    if bad:
        raise ExportError(f"{path} holds NaN or infinite values in {len(bad)} of its {len(state)} tensors (for "
                          f"example {', '.join(bad[:3])}): every prediction would be NaN or meaningless. Export a "
                          "model from a run whose training loss stayed finite.")
    model.eval()
    if not with_trust:
        return metadata, model
    trust = Trust.from_export(section, trust_tensors) if section is not None else Trust.absent()
    return metadata, model, trust


class _NormalizedModel(nn.Module):
    """float [B,3,H,W] in [0, 1] → (logits, probabilities[, ood_score]); normalization, the calibrated
    temperature and the unknown score are part of the graph (`trust.graph.TrustedModel`). With `regression`,
    → values: the model's numbers, only normalized."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], trust: Trust | None = None,
                 multi_label: bool = False, regression: bool = False) -> None:
        super().__init__()
        self.model = model if regression else TrustedModel(model, trust if trust is not None else Trust(), multi_label)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.model((images - self.mean) / self.std)


def _require_onnx() -> Any:
    try:
        import onnx
        import onnxruntime  # noqa: F401  (only checked: the exported file is meant to be run by it)
    except ImportError as error:
        raise ImportError(f"{_ONNX_HINT} ({error}).") from error
    return onnx


def export_onnx(learner: Predictor, path: str | Path = "model.onnx", opset: int = 17, size: int | None = None) -> Path:
    """Export the inference model to ONNX with the normalization built in.

    Input `image`: float32 [batch, 3, size, size], RGB in [0, 1], already resized and cropped as the
    validation transforms do (the batch axis is dynamic). Outputs `logits` and `probabilities` (the
    calibrated ones), both [batch, n_classes], and, for a model with a fitted unknown score, `ood_score`
    [batch] (above the metadata's `trust.ood.threshold`: not one of the classes); a regression model's one
    output is `values` [batch, n_outputs], in the order of its output names (vocab). The vocab, size, resize
    method and library version are stored in the ONNX metadata (`unfreeze` key, the same JSON as `export`).
    Written atomically.

    Args:
        learner: The learner to export.
        path: Where to write the `.onnx` file.
        opset: ONNX opset, >= 17.
        size: Input side in pixels; default: the data's size.

    Raises:
        ImportError: onnx or onnxruntime is missing (install `unfreeze[onnx]`).

    Example:
        >>> export_onnx(learn, "model.onnx")  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession("model.onnx")  # doctest: +SKIP
        >>> logits, probs = session.run(None, {"image": images_0_to_1})  # doctest: +SKIP
    """
    onnx = _require_onnx()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an integer >= 17, got {opset!r}.")
    metadata = _inference_config(learner)
    size = metadata["size"] if size is None else size
    model = copy.deepcopy(learner.model).float().cpu().eval()
    trust = copy.deepcopy(trust_of(learner))
    regression = isinstance(learner.task, Regression)
    wrapped = _NormalizedModel(model, metadata["mean"], metadata["std"], trust, isinstance(learner.task, MultiLabel),
                               regression).eval()
    outputs = ["values"] if regression else ["logits", "probabilities", *(["ood_score"] if trust.has_score else [])]
    example = torch.rand(2, 3, size, size)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter needs no package beyond onnx (torch's default dynamo exporter
            # also needs onnxscript); its deprecation notice is torch's concern, not the user's.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapped, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["image"],
                output_names=outputs, dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            )  # fmt: skip
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = _METADATA_KEY, json.dumps(metadata)
        onnx.save(graph, str(tmp))
    return Path(path)
