"""Convert a fastai vision model's weights into an unfreeze export, without unpickling anything.

fastai's `learn.export()` pickles the whole Learner (export.pkl): loading it runs whatever code the
pickle names, so unfreeze refuses it and explains how to save the weights alone instead. fastai's
`learn.save("stage")` (models/stage.pth: `{"model": state_dict, "opt": ...}`) and
`torch.save(learn.model.state_dict(), "weights.pth")` hold only tensors and plain containers, which
`torch.load(weights_only=True)` reads safely.

A fastai `vision_learner` model is `Sequential(body, head)`: keys `0.*` are the backbone (its
children up to the pooling layer, or `0.model.*` for a timm body) and `1.*` the head. unfreeze's
`TransferModel` holds the same layers in the same order, so tensors map one to one in order once
every shape agrees; anything else is refused with the first mismatch named.

Intended CLI: `unfreeze convert-fastai weights.pth --arch resnet34 --vocab cat,dog [--size 224]
[--resize-method crop] [--out model.unfreeze]`, calling `convert_fastai` with the same values.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unfreeze.data import ImageDataLoader, ImageDataLoaders, ImageDataset
from unfreeze.data.transforms import RESIZE_METHODS
from unfreeze.inference.export import export, fastai_export_hint, is_pickle
from unfreeze.models import TransferModel, create_model
from unfreeze.tasks import SingleLabel

__all__ = ["FastaiConversionError", "convert_fastai"]


class FastaiConversionError(ValueError):
    """A fastai file that cannot be converted: the message says what was found and what to do."""


def _read_fastai_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FastaiConversionError(f"No file at {path}. Expected fastai weights: models/<name>.pth written by "
                                    "learn.save(<name>), or torch.save(learn.model.state_dict(), 'weights.pth').")
    if path.stat().st_size == 0:  # torch.load's EOFError would pass for a refused pickle below
        raise FastaiConversionError(f"{path} is empty (0 bytes): a save or copy that never finished. Expected fastai "
                                    "weights: save them again with learn.save(<name>) and copy the whole file.")
    with path.open("rb") as handle:
        start = handle.read(4)
    if not is_pickle(start):  # torch.load's UnpicklingError would call any bytes a pickled Learner
        raise FastaiConversionError(f"{path} is not a torch file (it opens with {start!r}, not a pickle or torch's "
                                    "zip). Expected fastai weights: models/<name>.pth written by learn.save(<name>), "
                                    "or torch.save(learn.model.state_dict(), 'weights.pth').")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as error:
        # weights_only refuses any class it does not know, before running anything: the whole-Learner case.
        raise FastaiConversionError(fastai_export_hint(path) + f" Detail: {type(error).__name__}.") from None
    except Exception as error:  # other garbage (KeyError for text, IndexError, ...): the unpickler ran no code
        raise FastaiConversionError(f"{path} is not a readable torch file ({type(error).__name__}). Expected fastai "
                                    "weights: models/<name>.pth written by learn.save(<name>).") from None
    state = loaded.get("model", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = type(state).__name__ if not isinstance(state, Mapping) else f"keys {list(state)[:6]}"
        raise FastaiConversionError(f"{path} holds {found}, not a state dict of tensors. Expected the file of "
                                    "learn.save(<name>) ({'model': state_dict, 'opt': ...}) or a bare state dict.")
    # DDP and torch.compile prefixes, as read_state_dict strips them.
    return {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state.items()}


def _split_halves(state: dict[str, torch.Tensor], path: Path) -> tuple[list[tuple[str, torch.Tensor]], ...]:
    body = [(key, value) for key, value in state.items() if key.startswith("0.")]
    head = [(key, value) for key, value in state.items() if key.startswith("1.")]
    if not body or not head or len(body) + len(head) != len(state):
        raise FastaiConversionError(
            f"{path} is not a fastai vision_learner model: expected keys '0.*' (body) and '1.*' (head) only, "
            f"found {', '.join(list(state)[:4])}, .... Models from other fastai learners cannot be converted.")
    return body, head


def _map_in_order(theirs: Sequence[tuple[str, torch.Tensor]], module: nn.Module, part: str,
                  arch: object) -> OrderedDict[str, torch.Tensor]:
    ours = list(module.state_dict().items())
    hint = (f"Check --arch (got {arch!r}; it must be the architecture the fastai model was built with) "
            "and that the head is fastai's default (lin_ftrs=[512]).")
    if len(ours) != len(theirs):
        raise FastaiConversionError(f"The fastai {part} has {len(theirs)} tensors, {arch!r}'s has {len(ours)}. {hint}")
    for (their_key, their_value), (our_key, our_value) in zip(theirs, ours, strict=True):
        if their_value.shape != our_value.shape:
            raise FastaiConversionError(
                f"The fastai {part} tensor {their_key} has shape {tuple(their_value.shape)}, where {arch!r} has "
                f"{our_key} of shape {tuple(our_value.shape)}. {hint}")
    return OrderedDict((our_key, their_value) for (_, their_value), (our_key, _) in zip(theirs, ours, strict=True))


def _empty_loaders(model: TransferModel, vocab: list[str], size: int, resize_method: str) -> ImageDataLoaders:
    def loader(training: bool) -> ImageDataLoader:
        dataset = ImageDataset([], vocab, item_size=size, resize_method=resize_method)
        return ImageDataLoader(dataset, 64, training=training, size=size, mean=model.mean, std=model.std)

    return ImageDataLoaders(loader(True), loader(False), seed=0)


@dataclass
class _Converted:
    """What `export` reads of a learner: a converted model, its (empty) loaders, task and seed."""

    model: nn.Module
    dls: ImageDataLoaders
    task: SingleLabel = field(default_factory=SingleLabel)
    seed: int | None = None


def convert_fastai(weights_path: str | Path, arch: str | Callable[..., nn.Module],
                   out_path: str | Path = "model.unfreeze", *, vocab: Sequence[str], size: int = 224,
                   resize_method: str = "crop") -> Path:
    """Turn fastai vision_learner weights (a .pth of tensors) into an unfreeze export for `load_learner`.

    Args:
        weights_path: fastai's `learn.save(name)` file (models/name.pth) or a saved `learn.model.state_dict()`.
            A pickled Learner (export.pkl) is refused with the steps that convert it.
        arch: The architecture the fastai model used, as `create_model` takes it (`"resnet34"`, torchvision's
            `resnet34`, a timm name).
        out_path: Where to write the export.
        vocab: The class names in fastai's order (`learn.dls.vocab`).
        size: The image size the model was trained at; `resize_method` as fastai's Resize method.

    Returns:
        The path written.

    Raises:
        FastaiConversionError: A pickle, not a fastai vision model, or tensors that do not fit `arch`.

    Example:
        >>> convert_fastai("models/stage.pth", "resnet34", "pets.unfreeze", vocab=["cat", "dog"])  # doctest: +SKIP
        PosixPath('pets.unfreeze')
        >>> learn = load_learner("pets.unfreeze")  # doctest: +SKIP
    """

    path, vocab = Path(weights_path), [str(name) for name in vocab]
    if resize_method not in RESIZE_METHODS or isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"Expected size a positive int and resize_method one of {RESIZE_METHODS}; "
                         f"got {size!r} and {resize_method!r}.")
    body, head = _split_halves(_read_fastai_state(path), path)
    n_out = int(head[-1][1].shape[0])
    if len(vocab) != n_out or len(set(vocab)) != len(vocab):
        raise FastaiConversionError(f"The fastai model predicts {n_out} classes; vocab has {len(vocab)} "
                                    f"({len(set(vocab))} distinct). Pass learn.dls.vocab, in its order.")
    model = create_model(arch, n_out, pretrained=False)
    model.body.load_state_dict(_map_in_order(body, model.body, "body", arch))
    model.head.load_state_dict(_map_in_order(head, model.head, "head", arch))
    return export(_Converted(model, _empty_loaders(model, vocab, size, resize_method)), out_path)
