"""fastai's transform spellings (`Resize`, `RandomResizedCrop`, `aug_transforms`, `Normalize`) mapped onto
unfreeze's pipeline.

unfreeze has one fixed image pipeline: an item resize on the CPU (`item_size`, `resize_method`), then
one batch augmentation on the device (`BatchAugment`) that also resizes to the final `size`. fastai
expresses the same choices as lists of transform objects. The objects here only *describe* a choice;
`resolve_pipeline` turns the `item_tfms=` / `batch_tfms=` of a factory into those settings:

    item_tfms=Resize(460), batch_tfms=aug_transforms(size=224, min_scale=0.75)
    -> item_size=460, size=224, resize_method="crop", augment=BatchAugment(min_scale=0.75)
    batch_tfms=[*aug_transforms(size=224), Normalize.from_stats(*imagenet_stats)]
    -> ... and batches normalized with ImageNet's mean and std (else they stay in [0, 1])

What does not map, said once per process with an `UnsupportedTransformWarning`: perspective warp
(`max_warp`), vertical/dihedral flips (`flip_vert=True`), and `pad_mode` other than zeros for
`Resize(method="pad")`. Documented differences: `RandomResizedCrop` crops squares (no aspect-ratio
jitter) out of the item-resized image; `aug_transforms(min_scale=...)` applies even without `size`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unfreeze.data.sources import DataWarning
from unfreeze.data.transforms import RESIZE_METHODS, BatchAugment

__all__ = [
    "AugTransforms",
    "Normalize",
    "PadMode",
    "PipelineSettings",
    "RandomResizedCrop",
    "Resize",
    "ResizeMethod",
    "UnsupportedTransformWarning",
    "aug_transforms",
    "imagenet_stats",
    "resolve_pipeline",
]

DEFAULT_SIZE = 224
# fastai's name for ImageNet's per-channel (mean, std), the statistics most pretrained backbones expect.
imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
_WARNED: set[str] = set()


class UnsupportedTransformWarning(DataWarning):
    """A fastai transform setting that unfreeze's pipeline does not apply; training goes on without it."""


def _warn_once(key: str, message: str) -> None:
    # Once per process: a notebook re-running a cell should not repeat the same caveat.
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, UnsupportedTransformWarning, stacklevel=3)


def _square_size(size: int | Sequence[int], what: str) -> int:
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and size[0] != size[1] and all(
            isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size):
        # fastbook's head-pose model asks aug_transforms(size=(240, 320)): train on the longer side's square.
        _warn_once(f"rectangle {what}", f"{what}: unfreeze trains on square images; size {tuple(size)} becomes "
                                        f"{max(size)} x {max(size)} (the longer side). Pass one side to silence this.")
        size = max(size)
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{what}: expected a positive int size (square images), got {size!r}. unfreeze trains on "
                         f"square images; pass one side, e.g. {what.split('(')[0]}(224).")
    return size


class ResizeMethod:
    """fastai's names for the resize methods: `Resize(128, ResizeMethod.Squish)`."""

    Crop = "crop"
    Pad = "pad"
    Squish = "squish"


class PadMode:
    """fastai's names for `pad_mode`: `Resize(128, ResizeMethod.Pad, pad_mode=PadMode.Zeros)`.

    unfreeze pads with black (`Zeros`); the others warn once and pad with black too.
    """

    Zeros = "zeros"
    Border = "border"
    Reflection = "reflection"


@dataclass(frozen=True)
class Resize:
    """fastai's `Resize(size, method)`: every image to `size` × `size` on the CPU, before batching.

    method "crop" (fastai's default) takes a random square crop in training and the centre one in
    validation; "pad" fits the long side and pads with black (fastai's default pad_mode reflects the
    image: a warning says so unless pad_mode="zeros"); "squish" ignores the aspect ratio.

    Example:
        >>> dls = ImageDataLoaders.from_folder("data", item_tfms=Resize(224, method="squish"))  # doctest: +SKIP
    """

    size: int
    method: str = "crop"
    pad_mode: str = "reflection"  # fastai's default; unfreeze pads with black, and says so for method="pad"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _square_size(self.size, "Resize"))
        method = str(self.method).lower()
        if method not in RESIZE_METHODS:
            raise ValueError(f"Resize: method must be one of {RESIZE_METHODS}, got {self.method!r}.")
        object.__setattr__(self, "method", method)
        if method == "pad" and self.pad_mode != "zeros":
            _warn_once("pad_mode", f"Resize(method='pad', pad_mode={self.pad_mode!r}): unfreeze pads with black "
                                   "(pad_mode='zeros'); pass pad_mode='zeros' to silence this warning.")


@dataclass(frozen=True)
class RandomResizedCrop:
    """fastai's `RandomResizedCrop(size, min_scale)`: in training, a random crop of `min_scale` to all
    of the image's area, resized to `size`; in validation, the centre crop.

    The crop is square (fastai also jitters the aspect ratio, 3/4 to 4/3) and is taken on the device
    from the image resized to `size` on its short side.

    Example:
        >>> crop = RandomResizedCrop(128, min_scale=0.35)
        >>> dls = ImageDataLoaders.from_folder("data", item_tfms=crop)  # doctest: +SKIP
    """

    size: int
    min_scale: float = 0.08

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _square_size(self.size, "RandomResizedCrop"))
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"RandomResizedCrop: min_scale must be in (0, 1], got {self.min_scale}. "
                             "It is the smallest fraction of the image's area a crop keeps, e.g. 0.35.")


@dataclass(frozen=True)
class AugTransforms:
    """What `aug_transforms` returns: the batch augmentation and, optionally, the final size."""

    augment: BatchAugment
    size: int | None = None


def aug_transforms(size: int | None = None, mult: float = 1.0, do_flip: bool = True, flip_vert: bool = False,
                   max_rotate: float = 10.0, min_zoom: float = 1.0, max_zoom: float = 1.1,
                   max_lighting: float = 0.2, max_warp: float = 0.2, p_affine: float = 0.75,
                   p_lighting: float = 0.75, min_scale: float = 1.0) -> list[AugTransforms]:
    """fastai's standard batch augmentation, as a list for `batch_tfms=` (fastai's defaults).

    `mult` scales rotation, lighting and warp, as in fastai. `size` is the final image size: with a
    larger `Resize` in `item_tfms` that is fastai's presizing. Perspective warp is not applied (one
    warning per process; pass `max_warp=0` to silence it) and `flip_vert=True` flips horizontally only.

    Example:
        >>> dls = ImageDataLoaders.from_folder("data", item_tfms=Resize(460),
        ...                                    batch_tfms=aug_transforms(size=224, min_scale=0.75))  # doctest: +SKIP
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    problems = []
    if not 0.0 <= max_lighting < 0.5:
        problems.append(f"max_lighting * mult must be in [0, 0.5), got {max_lighting:g}")
    if not 0.0 < min_zoom <= max_zoom:
        problems.append(f"expected 0 < min_zoom <= max_zoom, got {min_zoom} and {max_zoom}")
    if not 0.0 < min_scale <= 1.0:
        problems.append(f"min_scale must be in (0, 1], got {min_scale}")
    if not (0.0 <= p_affine <= 1.0 and 0.0 <= p_lighting <= 1.0):
        problems.append(f"p_affine and p_lighting must be probabilities, got {p_affine} and {p_lighting}")
    if problems:
        raise ValueError("aug_transforms: " + "; ".join(problems) + ".")
    if max_warp > 0:
        _warn_once("max_warp", f"aug_transforms: perspective warp (max_warp={max_warp:g}) is not applied by unfreeze; "
                               "flips, rotation, zoom and lighting are. Pass max_warp=0 to silence this warning.")
    if flip_vert:
        _warn_once("flip_vert", "aug_transforms(flip_vert=True): unfreeze flips horizontally only (no vertical or "
                                "dihedral flips).")
    augment = BatchAugment(flip_p=0.5 if do_flip else 0.0, max_rotate=max_rotate, max_zoom=max_zoom,
                           max_lighting=max_lighting, p_affine=p_affine, p_lighting=p_lighting, min_zoom=min_zoom,
                           min_scale=min_scale)
    return [AugTransforms(augment, None if size is None else _square_size(size, "aug_transforms(size)"))]


@dataclass(frozen=True)
class Normalize:
    """fastai's `Normalize.from_stats(mean, std)` in `batch_tfms`: batches become (x - mean) / std.

    Without it the loaders' batches stay in [0, 1] until a learner sets its model's statistics, as in
    fastai, where `vision_learner` adds them. A learner always applies its model's input statistics
    (what the weights expect; ImageNet's for the resnets and xresnets), replacing these.

    Example:
        >>> Normalize.from_stats(*imagenet_stats).mean
        (0.485, 0.456, 0.406)
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        mean, std = _three_floats(self.mean, "mean"), _three_floats(self.std, "std")
        if min(std) <= 0:
            raise ValueError(f"Normalize: every std must be > 0, got {std}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float], dim: int = 1, ndim: int = 4,
                   cuda: bool = True) -> Normalize:
        """fastai's constructor: per-channel `mean` and `std` (3 values each, e.g. `*imagenet_stats`).

        `dim`, `ndim` and `cuda` are accepted for fastai's signature: unfreeze batches are always
        [B, 3, H, W] and are normalized on the loaders' device.

        Example:
            >>> Normalize.from_stats([0.5] * 3, [0.5] * 3).std
            (0.5, 0.5, 0.5)
        """
        if (dim, ndim) != (1, 4):
            raise ValueError(f"Normalize.from_stats: unfreeze normalizes image batches [B, 3, H, W] over the "
                             f"channels (dim=1, ndim=4); got dim={dim}, ndim={ndim}. Leave both out.")
        return cls(tuple(mean), tuple(std))  # type: ignore[arg-type]


def _three_floats(values: Any, what: str) -> tuple[float, float, float]:
    try:
        floats = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != 3:
        raise ValueError(f"Normalize: expected 3 {what} values (one per RGB channel), got {values!r}. "
                         "For ImageNet statistics use Normalize.from_stats(*imagenet_stats).")
    return floats  # type: ignore[return-value]


@dataclass(frozen=True)
class PipelineSettings:
    """The factory arguments that item_tfms / batch_tfms and the explicit keywords resolve to."""

    size: int
    item_size: int | None
    resize_method: str
    augment: BatchAugment | None
    normalize: Normalize | None = None  # None: the loaders keep [0, 1] until a learner sets its statistics


def _as_list(transforms: Any) -> list[Any]:
    if transforms is None:
        return []
    if isinstance(transforms, (list, tuple)):
        return [item for entry in transforms for item in _as_list(entry)]
    return [transforms]


def _one(transforms: list[Any], kinds: tuple[type, ...], argument: str, expected: str) -> Any:
    wrong = [entry for entry in transforms if not isinstance(entry, kinds)]
    if wrong:
        note = (" For normalization use unfreeze's Normalize.from_stats(mean, std) (from unfreeze import *); a "
                "learner also applies its backbone's statistics by itself."
                if any("Normalize" in type(entry).__name__ or "Normalize" in repr(entry) for entry in wrong) else "")
        raise TypeError(f"{argument} accepts {expected}; got {', '.join(repr(entry) for entry in wrong)}. "
                        f"Use those spellings, or the keywords size=, item_size=, resize_method=, augment=.{note}")
    if len(transforms) > 1:
        raise ValueError(f"{argument} takes one of {expected}, got {len(transforms)}: {transforms}. Keep one.")
    return transforms[0] if transforms else None


def resolve_pipeline(item_tfms: Any, batch_tfms: Any, *, size: int | None, item_size: int | None,
                     resize_method: str | None, augment: bool | BatchAugment | None) -> PipelineSettings:
    """Merge fastai's `item_tfms` / `batch_tfms` with unfreeze's keywords into one set of settings.

    Without transforms: size 224, "crop", `augment=None` or True gives `BatchAugment()` (unfreeze's
    defaults). With transforms, fastai's meaning holds: no `batch_tfms`, no augmentation. A keyword
    that says something else than a transform raises ValueError naming both.

    Example:
        >>> resolve_pipeline(Resize(460), aug_transforms(size=224, max_warp=0), size=None, item_size=None,
        ...                  resize_method=None, augment=None).item_size
        460
    """
    item = _one(_as_list(item_tfms), (Resize, RandomResizedCrop), "item_tfms",
                "Resize(size, method=...) or RandomResizedCrop(size, min_scale=...)")
    batch_list = _as_list(batch_tfms)
    normalize = _one([entry for entry in batch_list if isinstance(entry, Normalize)], (Normalize,), "batch_tfms",
                     "Normalize.from_stats(mean, std)")
    batch = _one([entry for entry in batch_list if not isinstance(entry, Normalize)], (AugTransforms,), "batch_tfms",
                 "aug_transforms(...) and Normalize.from_stats(mean, std)")
    if isinstance(augment, BatchAugment) or augment is None or isinstance(augment, bool):
        pass
    else:
        raise TypeError(f"augment must be True, False or a BatchAugment, got {augment!r}.")
    if item is None and batch is None and normalize is None:
        augment = BatchAugment() if augment is None or augment is True else (augment or None)
        return PipelineSettings(size or DEFAULT_SIZE, item_size, resize_method or "crop", augment, normalize)

    conflicts = []
    method = item.method if isinstance(item, Resize) else "crop"
    if item is not None and item_size is not None and item_size != item.size:
        conflicts.append(f"item_size={item_size} but item_tfms={item!r}")
    if item is not None and resize_method is not None and resize_method != method:
        conflicts.append(f"resize_method={resize_method!r} but item_tfms={item!r}")
    if batch is not None and batch.size is not None and size is not None and size != batch.size:
        conflicts.append(f"size={size} but batch_tfms=aug_transforms(size={batch.size})")
    if batch is not None and augment is not None:
        conflicts.append(f"augment={augment!r} and batch_tfms={batch_tfms!r}")
    if conflicts:
        raise ValueError("The keywords and the fastai transforms say different things: " + "; ".join(conflicts)
                         + ". Pass one of each pair (the transforms alone are enough).")

    final_size = (batch.size if batch is not None and batch.size is not None else size) or (
        item.size if item is not None else DEFAULT_SIZE)
    if item is not None:
        item_size = item.size
    if batch is not None:
        chosen: BatchAugment | None = batch.augment
    else:
        chosen = BatchAugment() if augment is True else (augment or None)
    if isinstance(item, RandomResizedCrop) and item.min_scale < 1.0:
        # fastai crops on the item, then the batch may zoom and crop again: the area scales multiply.
        base = chosen or BatchAugment(flip_p=0.0, max_rotate=0.0, max_zoom=1.0, max_lighting=0.0, p_affine=0.0,
                                      p_lighting=0.0)
        chosen = dataclasses.replace(base, min_scale=base.min_scale * item.min_scale)
    if item_size is not None and item_size < final_size:
        raise ValueError(f"The item size {item_size} is smaller than the final size {final_size}. Expected "
                         f"Resize(n) with n >= aug_transforms(size=...), e.g. Resize({math.ceil(final_size * 2)}).")
    return PipelineSettings(final_size, item_size, resize_method or method, chosen, normalize)
