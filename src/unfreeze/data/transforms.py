"""Item resize on the CPU (crop, pad, squish) and batch augmentation + normalization on the device.

Every random draw comes from a numpy Generator passed in by the loader, which seeds it with
(seed, epoch); the global RNGs are never used, so a resumed run replays the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["MAX_CROP_ASPECT", "MAX_SIZE", "RESIZE_METHODS", "AugmentParams", "BatchAugment", "crop_item", "move_points",
           "resize_batch", "resize_item", "to_device_async"]

RESIZE_METHODS = ("crop", "pad", "squish")
# Pixels per side, for training, prediction and exports alike: one 16384 px image already takes 805 MB as
# uint8; a larger size is a typo (50000 would ask for 7.5 GB per image), not a setting to try.
MAX_SIZE = 16_384
# A crop item's long side is at most this many times its short side (a 32:9 panorama is 3.6).
MAX_CROP_ASPECT = 8


def resize_item(image: Image.Image, item_size: int, method: str,
                geometry: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an RGB PIL image for the cache; returns uint8 HWC.

    crop: short side = item_size (the square crop is taken per access, random in training);
    pad: long side = item_size, centred on black to item_size × item_size; squish: item_size × item_size.
    `geometry`, the (width, height) the item's shape is computed from, is the image's own size unless
    given (the size before a decoder averaged the image down, so the item keeps the shape it would have).

    Example:
        >>> resize_item(Image.new("RGB", (640, 480)), 224, "crop").shape
        (224, 299, 3)
    """
    width, height = geometry or image.size
    if method == "squish":
        return np.array(image.resize((item_size, item_size), Image.Resampling.BILINEAR))
    if method == "crop":
        scale = item_size / min(width, height)
        new_width, new_height = max(item_size, round(width * scale)), max(item_size, round(height * scale))
        # A strip of a few KB (1 x 1,000,000 pixels) would become item_size x item_size·10⁶ pixels, gigabytes:
        # only its centre, at most MAX_CROP_ASPECT times as long as its short side, is kept (photos are less).
        longest = MAX_CROP_ASPECT * item_size
        kept_x, kept_y = min(1.0, longest / new_width), min(1.0, longest / new_height)
        box = (image.width * (1 - kept_x) / 2, image.height * (1 - kept_y) / 2,
               image.width * (1 + kept_x) / 2, image.height * (1 + kept_y) / 2)
        return np.array(image.resize((min(new_width, longest), min(new_height, longest)), Image.Resampling.BILINEAR,
                                     box=box))
    if method == "pad":
        scale = item_size / max(width, height)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = Image.new("RGB", (item_size, item_size))
        canvas.paste(image.resize(new_size, Image.Resampling.BILINEAR),
                     ((item_size - new_size[0]) // 2, (item_size - new_size[1]) // 2))
        return np.array(canvas)
    raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {method!r}")


def crop_item(image: torch.Tensor, item_size: int, position: tuple[float, float] | None) -> torch.Tensor:
    """Square crop of a cached CHW image: at `position` (fractions in [0, 1)) or centred if None."""
    height, width = image.shape[-2], image.shape[-1]
    if height == item_size and width == item_size:
        return image
    if position is None:
        top, left = (height - item_size) // 2, (width - item_size) // 2
    else:
        top = int(position[0] * (height - item_size + 1))
        left = int(position[1] * (width - item_size + 1))
    return image[:, top : top + item_size, left : left + item_size]


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to `device` without making the host wait for the GPU.

    A plain `.to("cuda")` from pageable memory synchronises the stream, which would stall the training
    loop once per call; from pinned memory the copy is queued behind the running kernels instead.

    Example:
        >>> to_device_async(torch.arange(4), torch.device("cpu"))
        tensor([0, 1, 2, 3])
    """
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _floats(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


@dataclass
class AugmentParams:
    """Per-image draws for one batch (CPU tensors of length B)."""

    flip: torch.Tensor  # bool
    angle: torch.Tensor  # degrees
    zoom: torch.Tensor  # >= 1
    shift: torch.Tensor  # [B, 2], in normalized coordinates
    brightness: torch.Tensor  # added in logit space
    contrast: torch.Tensor  # multiplies in logit space

    def select(self, slots: list[int]) -> AugmentParams:
        """The draws of the given batch slots (the images that decoded)."""
        index = torch.as_tensor(slots, dtype=torch.long)
        return type(self)(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    def to(self, device: torch.device) -> AugmentParams:
        """The same draws on `device`, sent as one packed copy that the host does not wait for."""
        if self.angle.device == device:
            return self
        packed = torch.stack([self.flip.float(), self.angle, self.zoom, self.shift[:, 0], self.shift[:, 1],
                              self.brightness, self.contrast], dim=1)
        packed = to_device_async(packed, device)
        return AugmentParams(packed[:, 0] > 0.5, packed[:, 1], packed[:, 2], packed[:, 3:5], packed[:, 5],
                             packed[:, 6])


@dataclass
class BatchAugment:
    """fastai's default aug_transforms, drawn per image and applied to a whole batch on its device.

    One affine_grid/grid_sample does flip, rotation and zoom (and the resize from the item size to
    the final size when presizing); brightness and contrast follow fastai's logit-space lighting.

    Example:
        >>> augment = BatchAugment()
        >>> params = augment.draw(np.random.default_rng(0), 8)
        >>> out = augment(torch.rand(8, 3, 96, 96), params, size=64)
    """

    flip_p: float = 0.5
    max_rotate: float = 10.0
    max_zoom: float = 1.1
    max_lighting: float = 0.2
    p_affine: float = 0.75
    p_lighting: float = 0.75
    min_zoom: float = 1.0  # < 1 zooms out too (reflection fills the border)
    min_scale: float = 1.0  # < 1: an always-on random crop of [min_scale, 1] of the area (RandomResizedCrop)

    def draw(self, rng: np.random.Generator, n: int) -> AugmentParams:
        """Draw parameters for n images, always in the same order so the stream stays aligned."""
        flip = rng.random(n) < self.flip_p
        angle = rng.uniform(-self.max_rotate, self.max_rotate, n) * (rng.random(n) < self.p_affine)
        zoom = np.where(rng.random(n) < self.p_affine, rng.uniform(self.min_zoom, self.max_zoom, n), 1.0)
        unit_shift = 2.0 * rng.random((n, 2)) - 1.0
        change = rng.uniform(0.5 - self.max_lighting, 0.5 + self.max_lighting, n)
        brightness = np.log(change / (1.0 - change)) * (rng.random(n) < self.p_lighting)
        # abs, not a minus sign: at max_lighting=0, -log(1) is -0.0 and numpy refuses uniform(0.0, -0.0)
        # ("high - low < 0"); for every other value the two are the same number.
        log_contrast = abs(math.log(1.0 - self.max_lighting))
        contrast = np.exp(rng.uniform(-log_contrast, log_contrast, n) * (rng.random(n) < self.p_lighting))
        if self.min_scale < 1.0:
            # Drawn last and only when asked for, so the stream of every earlier setting is unchanged.
            zoom = zoom / np.sqrt(rng.uniform(self.min_scale, 1.0, n))
        shift = unit_shift * (1.0 - 1.0 / zoom)[:, None]  # keep the view inside
        return AugmentParams(torch.as_tensor(flip), _floats(angle), _floats(zoom), _floats(shift),
                             _floats(brightness), _floats(contrast))

    def _theta(self, params: AugmentParams, batch: int, device: torch.device) -> torch.Tensor:
        """[B, 2, 3]: maps each output pixel's normalized coordinates to the input's (scale · rotate · flip + shift)."""
        radians = params.angle * (math.pi / 180.0)
        cos, sin = torch.cos(radians), torch.sin(radians)
        inverse_zoom = 1.0 / params.zoom
        flip_sign = 1.0 - 2.0 * params.flip.float()
        # theta maps output coordinates to input coordinates: scale · rotate · flip, plus shift.
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0] = inverse_zoom * cos * flip_sign
        theta[:, 0, 1] = -inverse_zoom * sin
        theta[:, 1, 0] = inverse_zoom * sin * flip_sign
        theta[:, 1, 1] = inverse_zoom * cos
        theta[:, :, 2] = params.shift
        return theta

    def __call__(self, images: torch.Tensor, params: AugmentParams, size: int) -> torch.Tensor:
        """Augment float [B,3,H,W] images in [0, 1]; returns [B,3,size,size] on the same device."""
        batch, device = images.shape[0], images.device
        params = params.to(device)
        theta = self._theta(params, batch, device)
        grid = F.affine_grid(theta, [batch, 3, size, size], align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        logits = torch.logit(images.clamp(1e-6, 1.0 - 1e-6))
        logits = (logits + params.brightness.view(-1, 1, 1, 1)) * params.contrast.view(-1, 1, 1, 1)
        return torch.sigmoid(logits)


def move_points(augment: BatchAugment, points: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Where (x, y) points in [-1, 1] (rows x0, y0, x1, y1, ...) land on images augmented with `params`.

    The augmentation samples input coordinates `theta @ (x_out, y_out, 1)`; a point of the input is
    therefore at `A^-1 (p - t)` in the output, in the same [-1, 1] frame (fastai's flips, rotations and
    zooms move its `TensorPoint`s the same way). Unlabelled rows (NaN) stay NaN.

    Example:
        >>> params = BatchAugment(flip_p=1.0, p_affine=0.0).draw(np.random.default_rng(0), 1)
        >>> move_points(BatchAugment(), torch.tensor([[0.5, -0.25]]), params).tolist()
        [[-0.5, -0.25]]
    """
    batch = points.shape[0]
    params = params.to(points.device)
    theta = augment._theta(params, batch, points.device)
    matrix, shift = theta[:, :, :2], theta[:, :, 2]
    xy = points.float().reshape(batch, -1, 2) - shift.unsqueeze(1)
    moved = torch.linalg.solve(matrix.unsqueeze(1).expand(-1, xy.shape[1], -1, -1), xy.unsqueeze(-1)).squeeze(-1)
    return moved.reshape(points.shape).to(points.dtype)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic resize of float [B,3,H,W] to size × size (validation with presizing)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

