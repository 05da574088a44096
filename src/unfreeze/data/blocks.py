"""fastai's blocks and image types: what a DataBlock's input and target are, as unfreeze's tasks.

`ImageBlock` is the input (images from files); the target block picks the task:

| block | task | `get_y` returns |
|---|---|---|
| `CategoryBlock` | `SingleLabel` | a class name |
| `MultiCategoryBlock` | `MultiLabel(0.5)` | a list of class names (maybe empty) |
| `RegressionBlock(n_out=None)` | `Regression()` | a number, or a list of numbers |
| `PointBlock` | `Regression(points=True)` | (x, y) pixel coordinates, one pair or several, scaled to [-1, 1] |

A block may be given as the class or an instance, as in fastai. `PILImage.create` / `PILImageBW.create`
open an image as fastai's do (RGB, or grayscale).

Example:
    >>> block_task(RegressionBlock)
    Regression(points=False, loss_name='mse', name='regression')
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from unfreeze.data.decode import ImageSource, open_rgb
from unfreeze.tasks import MultiLabel, Regression, SingleLabel, Task

__all__ = ["CategoryBlock", "ImageBlock", "MultiCategoryBlock", "PILImage", "PILImageBW", "PointBlock",
           "RegressionBlock", "block_task", "is_block"]


class ImageBlock:
    """The input block: images read from files (fastai's `ImageBlock`, class or instance).

    `ImageBlock(cls=PILImageBW)` is accepted: unfreeze decodes to RGB, and a grayscale file becomes three
    equal channels, so a grayscale dataset (MNIST) carries the same information as fastai's one channel.
    """

    def __init__(self, cls: Any = None) -> None:
        self.cls = cls


class CategoryBlock:
    """The target block: one label per image, vocab sorted (fastai's `CategoryBlock`, class or instance)."""

    def __init__(self, vocab: Any = None, sort: bool = True, add_na: bool = False) -> None:
        self.vocab = vocab


class MultiCategoryBlock:
    """The target block for multi-label data: `get_y` returns a list of class names per image, maybe
    empty (fastai's `MultiCategoryBlock`, class or instance). The learner then trains with a sigmoid
    and binary cross-entropy, and a class is predicted at a probability of 0.5 or more.
    """

    def __init__(self, encoded: bool = False, vocab: Any = None, add_na: bool = False) -> None:
        self.vocab = vocab


class RegressionBlock:
    """fastai's `RegressionBlock(n_out=None)`: `get_y` returns a number or a list of numbers per image;
    the learner predicts them with mean squared error (fastai's `MSELossFlat`).

    Example:
        >>> block = DataBlock(blocks=(ImageBlock, RegressionBlock), get_items=get_image_files,
        ...                   get_y=lambda path: float(path.stem.split("_")[1]))  # doctest: +SKIP
    """

    def __init__(self, n_out: int | None = None) -> None:
        self.n_out = n_out

    def task(self) -> Task:
        return Regression()


class PointBlock:
    """fastai's `PointBlock`: `get_y` returns (x, y) pixel coordinates (a tensor of 2 values, or of n × 2),
    scaled by the image's size to [-1, 1]; augmentation moves the points with the image.

    Example:
        >>> block = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files, get_y=get_ctr,
        ...                   splitter=FuncSplitter(lambda o: o.parent.name == "13"))  # doctest: +SKIP
    """

    def task(self) -> Task:
        return Regression(points=True)


def is_block(block: Any, kind: type) -> bool:
    """Whether `block` is the block class `kind` or an instance of it."""
    return block is kind or isinstance(block, kind)


def block_task(block: Any) -> Task:
    """The task a target block (class or instance) stands for.

    Raises:
        ValueError: Not one of the target blocks above.
    """
    if is_block(block, CategoryBlock):
        return SingleLabel()
    if is_block(block, MultiCategoryBlock):
        return MultiLabel()
    for kind in (RegressionBlock, PointBlock):
        if is_block(block, kind):
            return (block() if isinstance(block, type) else block).task()
    found = getattr(block, "__name__", type(block).__name__)
    raise ValueError(f"unfreeze's DataBlock handles images with CategoryBlock, MultiCategoryBlock, RegressionBlock or "
                     f"PointBlock targets; got {found}. Segmentation (MaskBlock) and boxes (BBoxBlock) are not "
                     "supported.")


class PILImage:
    """fastai's `PILImage.create(source)`: an image as an RGB `PIL.Image.Image`, EXIF orientation applied.

    The source may be a path, the bytes of an image file, a numpy array, a tensor or a PIL image;
    the result goes straight to `learn.predict(img)`.

    Example:
        >>> img = PILImage.create("images/cat.jpg")  # doctest: +SKIP
        >>> img.size  # doctest: +SKIP
        (500, 375)
    """

    @staticmethod
    def create(source: ImageSource | bytes) -> Image.Image:
        """Open `source` as an RGB PIL image (see the class); bytes are an encoded file (an upload)."""
        if isinstance(source, (bytes, bytearray)):
            return open_rgb(io.BytesIO(source))  # type: ignore[arg-type]  # PIL opens any binary file object
        return open_rgb(source)


class PILImageBW(PILImage):
    """fastai's `PILImageBW.create(source)`: the image in grayscale (PIL mode "L").

    Example:
        >>> PILImageBW.create(Image.new("RGB", (4, 4), "red")).mode
        'L'
    """

    @staticmethod
    def create(source: ImageSource | bytes) -> Image.Image:
        """Open `source` as a grayscale PIL image (see `PILImage.create` for the sources)."""
        return PILImage.create(source).convert("L")
