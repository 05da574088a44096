import numpy as np
import torch
from PIL import Image

from unfreeze.data import BatchAugment
from unfreeze.data.transforms import MAX_CROP_ASPECT, AugmentParams, crop_item, resize_item


def _identity(n: int) -> AugmentParams:
    zeros = torch.zeros(n)
    return AugmentParams(torch.zeros(n, dtype=torch.bool), zeros, torch.ones(n), torch.zeros(n, 2), zeros,
                         torch.ones(n))


def test_resize_item_shapes():
    image = Image.new("RGB", (60, 30))
    assert resize_item(image, 20, "crop").shape == (20, 40, 3)
    assert resize_item(image, 20, "pad").shape == (20, 20, 3)
    assert resize_item(image, 20, "squish").shape == (20, 20, 3)


def test_a_strip_one_pixel_high_is_cropped_to_its_centre_not_stretched_to_gigabytes():
    # A 1 x 1,000,000 PNG is a few KB; its crop item, short side 224, was 224 x 224,000,000 pixels (150 GB):
    # training, predict and serve's upload were killed. The item keeps the strip's centre.
    strip = np.zeros((1, 4000, 3), dtype=np.uint8)
    strip[:, 2000:] = 255  # black left half, white right half: the centre holds both
    item = resize_item(Image.fromarray(strip), 20, "crop")
    assert item.shape == (20, 20 * MAX_CROP_ASPECT, 3)
    assert item[:, 0].max() == 0 and item[:, -1].min() == 255
    assert resize_item(Image.new("RGB", (4000, 1)), 20, "crop", geometry=(8000, 2)).shape == (20, 160, 3)


def test_crop_item_centre_and_position():
    image = torch.arange(20 * 40).view(1, 20, 40).expand(3, 20, 40)
    assert crop_item(image, 20, None)[0, 0, 0] == 10
    assert crop_item(image, 20, (0.0, 0.0))[0, 0, 0] == 0
    assert crop_item(image, 20, (0.999, 0.999))[0, 0, -1] == 39


def test_identity_parameters_leave_images_unchanged():
    images = torch.rand(2, 3, 16, 16) * 0.9 + 0.05
    out = BatchAugment()(images, _identity(2), size=16)
    assert torch.allclose(out, images, atol=1e-4)


def test_flip_mirrors_horizontally():
    images = torch.rand(1, 3, 16, 16) * 0.9 + 0.05
    params = _identity(1)
    params.flip[:] = True
    assert torch.allclose(BatchAugment()(images, params, size=16), images.flip(-1), atol=1e-4)


def test_draws_are_per_image_and_seeded():
    augment = BatchAugment()
    first = augment.draw(np.random.default_rng(5), 64)
    again = augment.draw(np.random.default_rng(5), 64)
    assert torch.equal(first.angle, again.angle)
    assert first.angle.abs().max() <= 10 and first.zoom.min() >= 1.0 and first.zoom.max() <= 1.1
    assert 0 < first.flip.sum() < 64 and (first.angle == 0).any() and (first.angle != 0).any()
    contrast = first.contrast[first.contrast != 1]
    assert contrast.min() >= 0.8 - 1e-6 and contrast.max() <= 1.25 + 1e-6


def test_augment_resizes_presized_batches():
    out = BatchAugment()(torch.rand(3, 3, 32, 32), BatchAugment().draw(np.random.default_rng(0), 3), size=16)
    assert out.shape == (3, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
