"""Any image file (or in-memory image) → RGB, with EXIF orientation applied.

Supported: JPEG (including CMYK and phones' multi-picture JPEGs), PNG (8 and 16 bit, palette, RGBA, LA,
grayscale), WebP, BMP, GIF (first frame) and TIFF. Any other format Pillow knows is refused before it
decodes: a file's name says nothing about its content, and some decoders (EPS runs Ghostscript) must never
see an uploaded or crafted file. Transparent pixels are composited on white, the usual background of product
and document photos, rather than dropped (dropping alpha shows whatever colour hid under it).
16-bit images are scaled to 8 bits (65535 → 255), never clipped.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from unfreeze.data.sources import SkippedFiles
from unfreeze.data.transforms import resize_item

__all__ = [
    "DECODED_FORMATS", "BadFileReport", "DecodeJob", "ImageSource", "as_list", "chw", "decode_image", "decode_item",
    "default_workers", "open_image", "open_rgb", "to_rgb",
]

# What test_dl and predict accept: a path, a PIL image, a numpy HWC array or a CHW/HWC tensor.
ImageSource = str | Path | Image.Image | np.ndarray | torch.Tensor

# Decoding failures are reported like listing failures: one warning names and counts them.
BadFileReport = SkippedFiles

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}

# Pillow's names for the formats of IMAGE_EXTENSIONS ("JPEG" opens a phone's multi-picture JPEG, MPO, too).
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# A decoded image with a `draft_size` is averaged down to no less than this many times that size.
REDUCE_MARGIN = 2
_ORIENTATION = 0x0112  # the EXIF orientation tag
_AVERAGED_MODES = {"L", "LA", "RGB", "RGBA", "CMYK", "I"}  # modes whose pixels `Image.reduce` may average


@contextlib.contextmanager
def _pillow_notes_ignored() -> Iterator[None]:
    """Silences Pillow's warnings about images that decode fine; each names no file and comes once per
    image, or per size and process: a folder of them printed a screen of identical lines.

    - DecompressionBombWarning: over MAX_IMAGE_PIXELS (89 megapixels, a medium-format camera's photo). Such an
      image is drafted or averaged down; over twice the limit Pillow raises DecompressionBombError, which the
      loaders report with the file's name like any bad file.
    - "Corrupt EXIF data": a phone or editor's damaged EXIF block, read about 3 times a photo; an orientation
      that cannot be read leaves the image as stored, as browsers show it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message="(Possibly )?[Cc]orrupt EXIF", category=UserWarning)
        yield


def open_image(source: str | Path | IO[bytes]) -> Image.Image:
    """`PIL.Image.open` limited to `DECODED_FORMATS` (lazy, as Image.open: use it in a `with` block).

    Raises:
        PIL.UnidentifiedImageError: Not an image, or one in another format (the message names the
            supported ones).

    Example:
        >>> with open_image("cat.jpg") as image:  # doctest: +SKIP
        ...     image.size
        (640, 480)
    """
    Image.init()  # registers every plugin once: `formats` names only registered ones (else a KeyError)
    try:
        with _pillow_notes_ignored():
            return Image.open(source, formats=DECODED_FORMATS)
    except UnidentifiedImageError:
        name = source if isinstance(source, str | Path) else "the image"
        if isinstance(source, str | Path) and os.path.getsize(source) == 0:
            raise UnidentifiedImageError(f"{name} is empty (0 bytes), so it holds no image: a save, copy or "
                                         "download that did not finish. Use the complete file") from None
        raise UnidentifiedImageError(f"cannot identify image file {name}: not an image, or not one of the "
                                     "supported formats (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit RGB (alpha on white, 16 bit scaled).

    Example:
        >>> to_rgb(Image.new("LA", (4, 4))).mode
        'RGB'
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's convert("L") clips 16-bit values at 255; scale the full 16-bit range instead.
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(image, dtype=np.float64)), mode="L").convert("RGB")
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in image.info):
        return _on_white(image)
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixels as uint8: [0, 1] when the brightest is at most 1 (the usual float image), else 0..255
    (`np.asarray(image, dtype=np.float32)`); NaN becomes 0."""
    scale = 255.0 if np.nanmax(values, initial=0.0) <= 1.0 else 1.0
    return np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HWC image array with 1, 3 or 4 channels, got shape {array.shape}")
    if array.dtype != np.uint8:
        # Floats as float image files are (`_float_to_uint8`); 16-bit integers are scaled; other integers as 0..255.
        if np.issubdtype(array.dtype, np.floating):
            array = _float_to_uint8(array)
        elif array.dtype == np.uint16:
            array = np.rint(array / 257.0)
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array))


def open_rgb(source: ImageSource, draft_size: int | None = None) -> Image.Image:
    """Open a path or in-memory image as an RGB PIL image with EXIF orientation applied.

    `draft_size` lets the JPEG decoder skip detail it would throw away: it decodes at the smallest
    1/2, 1/4 or 1/8 scale that stays at least `draft_size` pixels on both sides.

    Example:
        >>> open_rgb("cat.jpg").mode  # doctest: +SKIP
        'RGB'
    """
    return _open_rgb_sized(source, draft_size)[0]


def _open_rgb_sized(source: ImageSource, draft_size: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """`open_rgb`, and the (width, height) to size an item by: the decoded image's, before any averaging
    down (which rounds its sides up)."""
    with _pillow_notes_ignored():
        return _decode_sized(source, draft_size)


def _decode_sized(source: ImageSource, draft_size: int | None) -> tuple[Image.Image, tuple[int, int]]:
    if isinstance(source, Image.Image):
        image = to_rgb(ImageOps.exif_transpose(source) or source)
        return image, image.size
    if isinstance(source, torch.Tensor | np.ndarray):
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
        if isinstance(source, torch.Tensor) and array.ndim == 3 and array.shape[0] in (1, 3, 4) \
                and array.shape[2] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # a tensor's CHW → HWC
        image = to_rgb(_from_array(array))
        return image, image.size
    with open_image(source) as image:
        image.seek(0)  # first frame of a GIF or multi-page TIFF
        if draft_size is not None and image.format == "JPEG":
            image.draft(image.mode, (draft_size, draft_size))
        image.load()  # raises here on truncated or corrupt data
        factor = 0 if draft_size is None else min(image.size) // (REDUCE_MARGIN * max(draft_size, 1))
        if factor >= 2 and image.getexif().get(_ORIENTATION, 1) == 1:
            # Other formats than JPEG decode whole: a 12,000-pixel PNG of a few hundred KB is 576 MB in
            # memory, and converting and copying it tripled that. Averaged down by a whole factor first
            # (still `REDUCE_MARGIN` times the size asked for), every later step works on the small image.
            # Palette indices, 1-bit values and floats (whose range `to_rgb` guesses from the brightest
            # pixel) become RGB first.
            averaged = image if image.mode in _AVERAGED_MODES else to_rgb(image)
            return to_rgb(averaged.reduce(factor)), image.size
        oriented = ImageOps.exif_transpose(image) or image
        return to_rgb(oriented).copy(), oriented.size


def decode_image(source: ImageSource) -> torch.Tensor:
    """Decode an image file (or in-memory image) to an RGB uint8 tensor of shape [3, H, W].

    Example:
        >>> decode_image("photo.png").shape  # doctest: +SKIP
        torch.Size([3, 480, 640])
    """
    array = np.asarray(open_rgb(source), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def default_workers() -> int:
    """Worker processes for the first pass: the CPUs this process may use, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        available = os.cpu_count() or 1
    return min(8, available)


def decode_item(source: ImageSource, item_size: int, method: str) -> tuple[np.ndarray | None, str]:
    """Decode and resize one item for the cache: (uint8 CHW array, "") or (None, why it failed).

    The channels-first copy is made here, in the decoding worker, so that the main process only
    wraps the array: done in the main process, that copy limits the first pass on many-core hosts.
    """
    try:
        image, geometry = _open_rgb_sized(source, item_size)
        if not image.width or not image.height:  # an empty array or PIL image; resizing it divides by zero
            return None, f"an empty image ({image.width} x {image.height} pixels)"
        array = resize_item(image, item_size, method, geometry=geometry)
    except Exception as error:  # any decoder failure must drop this file, never end the epoch
        return None, f"{type(error).__name__}: {error}"
    # Cached channels-first, so that batches are a plain stack of crops with no per-epoch transpose.
    return np.ascontiguousarray(array.transpose(2, 0, 1)), ""


class DecodeJob(Dataset):
    """What a worker process runs; holds only picklable plain data so it works with fork and spawn."""

    def __init__(self, paths: list[str], item_size: int, method: str) -> None:
        self.paths, self.item_size, self.method = paths, item_size, method

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str]:
        return (index, *decode_item(self.paths[index], self.item_size, self.method))


def chw(array: np.ndarray) -> torch.Tensor:
    """A decoded uint8 CHW array (from `decode_item`) as a tensor, without copying."""
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a channels-first [3, H, W] array from decode_item, got shape {array.shape}")
    return torch.from_numpy(array)


def as_list(results: list) -> list:
    """collate_fn that keeps a worker's results as a plain list."""
    return results
