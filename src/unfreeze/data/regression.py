"""Regression targets from items: numbers from cells or functions, points scaled to [-1, 1].

fastai's `RegressionBlock` takes numbers; its `PointBlock` takes pixel coordinates (x, y) and scales
them by the image's size to [-1, 1] (`PointScaler`), which is also what the network learns to predict.
The functions here turn whatever `get_y` or a table gives into a tuple of floats per item, with an
error that names the item when a value is not a number.

Example:
    >>> numbers_from("2.5", "a.jpg")
    (2.5,)
    >>> scale_points((320.0, 0.0), (640, 480))
    (0.0, -1.0)
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from unfreeze.data.decode import open_image
from unfreeze.data.sources import DataError, DataWarning

__all__ = ["image_size", "numbers_from", "output_names", "points_from", "scale_points", "source_size", "unscale_points",
           "warn_constant_outputs"]


def numbers_from(label: Any, item: Any) -> tuple[float, ...]:
    """A label (a number, a numeric string, a sequence, array or tensor of them) as a tuple of floats.

    Raises:
        DataError: A value is not a finite number; the message names the item.
    """
    values = label if isinstance(label, (list, tuple)) else (label,)
    if isinstance(label, torch.Tensor) or hasattr(label, "tolist"):
        values = torch.as_tensor(label.tolist() if not isinstance(label, torch.Tensor) else label).reshape(-1).tolist()
    numbers = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"The target of {item} is {label!r}, which is not a number. Regression data needs one "
                            "number per output (e.g. 2.5), or a list of them.") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise DataError(f"The target of {item} is {label!r}: not a finite number. Fix or remove that item.")
        numbers.append(number)
    if not numbers:
        raise DataError(f"The target of {item} is empty. Regression data needs at least one number per item.")
    return tuple(numbers)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (and EXIF rotation) without decoding it."""
    with open_image(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def scale_points(points: Sequence[float], size: tuple[int, int]) -> tuple[float, ...]:
    """Pixel coordinates x0, y0, x1, y1, ... of an image of `size` (width, height) scaled to [-1, 1],
    as fastai's `PointScaler`: `x * 2 / width - 1`, `y * 2 / height - 1`.

    Example:
        >>> scale_points((0.0, 240.0), (640, 480))
        (-1.0, 0.0)
    """
    width, height = size
    return tuple(value * 2.0 / (width if index % 2 == 0 else height) - 1.0 for index, value in enumerate(points))


def points_from(label: Any, item: Any, file: Path) -> tuple[float, ...]:
    """fastai's PointBlock target: (x, y) pixel points, one pair or many ([[x, y], ...]), scaled to [-1, 1].

    Raises:
        DataError: Not numbers, or not pairs, or `file` is no readable image.
    """
    numbers = numbers_from(label, item)
    if len(numbers) % 2:
        raise DataError(f"The points of {item} are {label!r}: expected (x, y) pairs, e.g. tensor([320., 240.]).")
    try:
        size = image_size(file)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # What PIL raises for a file that is no image, a damaged header, or one over its pixel limit.
        raise DataError(f"Cannot read the size of {file}, which its points are scaled by ({type(error).__name__}: "
                        f"{error}). Expected an image file. Fix or remove that file.") from error
    return scale_points(numbers, size)


def output_names(label_col: Any, n_outputs: int) -> list[str]:
    """The names of regression outputs: the label columns' names, else "value" or value0, value1, ...

    Example:
        >>> output_names(["age", "height"], 2), output_names(1, 1)
        (['age', 'height'], ['value'])
    """
    columns = list(label_col) if isinstance(label_col, (list, tuple)) else [label_col]
    if len(columns) == n_outputs and all(isinstance(column, str) for column in columns):
        return [str(column) for column in columns]
    return ["value"] if n_outputs == 1 else [f"value{index}" for index in range(n_outputs)]


def source_size(source: Any) -> tuple[int, int]:
    """(width, height) of an image source: a path, a PIL image, an HWC array or a CHW/HWC tensor.

    Example:
        >>> source_size(Image.new("RGB", (64, 48)))
        (64, 48)
    """
    if isinstance(source, (str, Path)):
        return image_size(source)
    if isinstance(source, Image.Image):
        return source.size
    if isinstance(source, (bytes, bytearray)):
        with open_image(io.BytesIO(source)) as image:
            return image.size
    shape = tuple(source.shape)
    if isinstance(source, torch.Tensor) and len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        return shape[2], shape[1]  # CHW
    return shape[1], shape[0]  # HWC (or HW)


def unscale_points(values: Sequence[float], size: tuple[int, int]) -> torch.Tensor:
    """Points in [-1, 1] (x0, y0, x1, y1, ...) back in pixels of an image of `size`, as [n, 2].

    Example:
        >>> unscale_points([0.0, -1.0], (640, 480)).tolist()
        [[320.0, 0.0]]
    """
    width, height = size
    points = torch.as_tensor(list(values), dtype=torch.float32).reshape(-1, 2)
    return (points + 1.0) * torch.tensor([width / 2.0, height / 2.0])


def warn_constant_outputs(items: Sequence[tuple[Any, Sequence[float]]], names: Sequence[str]) -> None:
    """One DataWarning naming the outputs whose target is the same number for every training item.

    Such an output has nothing to learn from the images: the network learns to answer that number, its R²
    is undefined, and the loss it adds is zero. It is usually a wrong column (an id, a unit, a constant
    filled in by a spreadsheet), so it is named; training goes on, since the other outputs may be right.

    Example:
        >>> warn_constant_outputs([("a.jpg", (1.0, 3.5)), ("b.jpg", (2.0, 3.5))], ["age", "height"])  # doctest: +SKIP
    """
    if len(items) < 2:
        return
    first = items[0][1]
    constant = [index for index in range(len(first)) if all(values[index] == first[index] for _, values in items)]
    if not constant:
        return
    named = ", ".join(f"{names[index] if index < len(names) else index!r} is {first[index]:g}" for index in constant)
    warnings.warn(f"Output {named} for every one of the {len(items)} training images: there is nothing to learn "
                  "from the images for it (the network learns to answer that number, and its R² is undefined). "
                  "Check that the right column is the target (label_col / --csv); if it is, leave the output out.",
                  DataWarning, stacklevel=4)
