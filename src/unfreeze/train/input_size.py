"""The input size a backbone can use: warn when its final feature map is under 2×2, upscale small images.

A CNN body divides the input side by its stride (32 for most): efficientnet_lite0 at 32 px ends on a
1×1 map and fine-tuning it is unstable (issue 17: 31% on 32 px digits, 84% at 64 px). Before training,
`plan_input_size` measures the map at the chosen size (`models.feature_map`), and reads the images'
own size from the files. When the map is too small and the images are natively no larger than the
chosen size (so a larger size only upscales them further and loses nothing but time), the
plan raises the size to the smallest multiple of 32 whose map is at least 2×2; `upscale=False`
(`--no-upscale`) keeps the chosen size. Otherwise (large images shrunk on purpose) it only warns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from torch import nn

from unfreeze.data import DataError
from unfreeze.data.decode import open_image, open_rgb
from unfreeze.models.feature_map import check_input_size, one_image_norm_layers, output_width

__all__ = ["MIN_CELLS", "SizePlan", "check_one_image_batches", "check_output_width", "native_size", "plan_input_size",
           "upscale_loaders"]

MIN_CELLS = 2  # the final map's side below which the pooled features see no layout
_ROUND_TO = 32  # the usual total stride: a multiple of it gives an exact, unpadded map
_LARGEST = 1024  # the scan for a usable size stops here: no CNN body needs more for a 2×2 map
_SAMPLE = 16  # images read for the native size: their headers only, so cheap


def native_size(sources: Sequence[Any], sample: int = _SAMPLE) -> int | None:
    """The largest side of up to `sample` evenly spaced images (files: header only); None without images.

    Example:
        >>> native_size(dls.train.dataset.sources)  # doctest: +SKIP
        28
    """
    if not sources:
        return None
    step = max(len(sources) // sample, 1)
    largest = 0
    for source in list(sources)[::step][:sample]:
        try:
            if isinstance(source, (str, Path)):
                with open_image(source) as image:
                    width, height = image.size
            else:
                width, height = open_rgb(source).size
        except (OSError, ValueError, Image.DecompressionBombError):
            # An unreadable file, or one over Pillow's pixel limit (no OSError): the loader reports it;
            # the size comes from the others.
            continue
        largest = max(largest, width, height)
    return largest or None


@dataclass(frozen=True)
class SizePlan:
    """The size to train at, and why.

    Attributes:
        requested: The size the user chose.
        size: The size to train at (larger than `requested` only when the plan upscales).
        feature_map: The body's final map (height, width) at `requested`; None for a body without one.
        native: The images' largest side, as read from the files (None if unknown).
        usable: The smallest multiple of 32 whose map is at least 2×2 (None when `requested` is fine).
    """

    requested: int
    size: int
    feature_map: tuple[int, int] | None
    native: int | None
    usable: int | None

    @property
    def upscaled(self) -> bool:
        return self.size != self.requested

    def message(self, arch: str, opt_out: str = "--no-upscale", set_size: str = "--size ") -> str:
        """The warning line for a too-small map (empty when the requested size is fine); `opt_out` names
        the switch that keeps the requested size and `set_size` the way to choose one (CLI spellings by
        default, `fit_recipe` passes its Python ones)."""
        if self.usable is None or self.feature_map is None:
            return ""
        height, width = self.feature_map
        native = f" (the images are {self.native} px)" if self.native else ""
        head = (f"at {self.requested} px{native}, {arch}'s final feature map is {height}x{width}, under "
                f"{MIN_CELLS}x{MIN_CELLS}: fine-tuning is unstable there")
        if self.upscaled:
            return f"{head}; training at {self.size} px instead ({opt_out} keeps {self.requested})"
        return f"{head}; use {set_size}{self.usable} or more"


def plan_input_size(body: nn.Module, size: int, sources: Sequence[Any] = (), upscale: bool = True) -> SizePlan:
    """Check `body`'s final feature map at `size`; upscale small images to a size it can use.

    Args:
        body: The backbone's feature extractor (`model.body`).
        size: The chosen input side in pixels.
        sources: The training images (paths or arrays) whose own size decides whether to upscale.
        upscale: Raise the size for small images (False: keep `size`, warn only).

    Example:
        >>> plan = plan_input_size(model.body, 32, dls.train.dataset.sources)  # doctest: +SKIP
        >>> plan.size, plan.feature_map, plan.native  # doctest: +SKIP
        (64, (1, 1), 8)
    """
    check = check_input_size(body, size, MIN_CELLS)
    native = native_size(sources) if sources else None
    if not check.too_small:
        return SizePlan(size, size, check.feature_map, native, None)
    # Upwards from the next multiple of 32: one forward pass for the usual case (32 → 64), where a
    # bisection over 1..2048 px (models.feature_map.min_input_size) took seconds on a CPU.
    first = (size // _ROUND_TO + 1) * _ROUND_TO
    usable = next((candidate for candidate in range(first, _LARGEST + 1, _ROUND_TO)
                   if not check_input_size(body, candidate, MIN_CELLS).too_small), None)
    if usable is None:
        return SizePlan(size, size, check.feature_map, native, None)  # no size helps: nothing to suggest
    small_images = native is not None and native <= size  # training at `size` already upscales them
    return SizePlan(size, usable if upscale and small_images else size, check.feature_map, native, usable)


def upscale_loaders(model: nn.Module, dls: Any, upscale: bool = True) -> SizePlan | None:
    """`plan_input_size` for `dls`'s training images at its size; an upscale sets both loaders' size.

    The new size stays after the fit: predictions and the export must see images as training did.
    Returns None for a model without a `body` or loaders without a `size` (nothing to measure).

    Example:
        >>> plan = upscale_loaders(learn.model, dls)  # doctest: +SKIP
        >>> plan.upscaled, dls.size  # doctest: +SKIP
        (True, 64)
    """
    body, size = getattr(model, "body", None), getattr(dls.train, "size", None)
    if not isinstance(body, nn.Module) or not isinstance(size, int):
        return None  # nothing to measure, or loaders that do not resize (not unfreeze's)
    plan = plan_input_size(body, size, getattr(dls.train.dataset, "sources", ()), upscale)
    if plan.upscaled:  # items decoded at the new size too: an export's item_size is never below its size
        dls.train.upscale_to(plan.size)
        dls.valid.upscale_to(plan.size)
    return plan


def check_one_image_batches(model: nn.Module, loader: Any) -> bool:
    """Whether `model`, in its current (training) modes, fails on a batch of one image from `loader`.

    A batch-norm layer that sees one value per channel cannot train (`one_image_norm_layers`). When the
    loader's batches hold one image by construction (batch size 1, or a last batch of one), that is a
    DataError now, before any step; otherwise True tells the loop to leave out a batch that broken
    files shrank to one image.

    Raises:
        DataError: Batch size 1, or a last batch of one image, for a model that cannot train on one.

    Example:
        >>> learn.set_train_mode(); check_one_image_batches(learn.model, learn.dls.train)  # doctest: +SKIP
        True
    """
    size = getattr(loader, "size", None)
    if not isinstance(size, int):
        return False
    failing = one_image_norm_layers(model, size, getattr(model, "n_in", 3))
    if not failing:
        return False
    n_items, batch_size = len(loader.dataset) * int(getattr(loader, "passes", 1)), loader.batch_size
    last = batch_size if loader.drop_last else n_items % batch_size or batch_size
    if min(batch_size, last) == 1:
        which = "batches of one image" if batch_size == 1 else \
            f"{n_items} training images in batches of {batch_size}: the last batch holds a single image"
        more = f" and {len(failing) - 1} more" if len(failing) > 1 else ""
        raise DataError(f"Training on {which}: the batch-norm layer {failing[0]}{more} sees one value per channel "
                        f"there at {size} px and cannot train on it. Use a batch size of 2 or more (bs=, --bs) "
                        "that leaves no single image over.")
    return True


def check_output_width(model: nn.Module, loader: Any, vocab: Sequence[str], regression: bool = False) -> None:
    """Stop before any step when `model` does not output one value per class (or per regression output).

    With more outputs than classes, cross-entropy trains without complaint and a prediction can name a class
    index the data has not got; with fewer, it fails inside the loss. A model whose output is not [N, K], or
    that cannot run on a zero image, is left to the first step.

    Raises:
        ValueError: The widths differ; the message gives the layer to change.

    Example:
        >>> check_output_width(learn.model, learn.dls.train, learn.dls.vocab)  # doctest: +SKIP
    """
    size = getattr(loader, "size", None)
    if not isinstance(size, int) or not vocab:
        return
    try:
        width = output_width(model, size, getattr(model, "n_in", 3))
    except Exception:  # the model's own error comes again, with its context, at the first step
        return
    if width is None or width == len(vocab):
        return
    what = "output" if regression else "class"
    counted = f"{len(vocab)} {what}" if len(vocab) == 1 else f"{len(vocab)} {'outputs' if regression else 'classes'}"
    listed = ", ".join(str(name) for name in list(vocab)[:10]) + (", ..." if len(vocab) > 10 else "")
    last = [module for module in model.modules() if isinstance(module, nn.Linear)]
    layer = (f"nn.Linear({last[-1].in_features}, {len(vocab)})" if last else f"a last layer with {len(vocab)} outputs")
    raise ValueError(f"The model outputs {width} value{'s' * (width != 1)} per image, but the data has {counted} "
                     f"({listed}): it needs one output per {what}. Make its last layer {layer} (n_out={len(vocab)}), "
                     "or build the model with vision_learner(dls, arch) / create_model(arch, n_out), which size it "
                     "from the data.")
