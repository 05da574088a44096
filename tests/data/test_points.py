"""Point targets move with their image: flips, rotations and zooms of the batch augmentation move the
(x, y) points in [-1, 1] exactly where the drawn spot goes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from unfreeze.data import DataBlock, DataError, FuncSplitter, ImageBlock, PointBlock, aug_transforms, get_image_files
from unfreeze.data.regression import scale_points
from unfreeze.data.transforms import BatchAugment, move_points

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning")


def _spot_centre(image: torch.Tensor) -> tuple[float, float]:
    """The bright spot's centre in [-1, 1] coordinates (pixel centres, as grid_sample's align_corners=False)."""
    brightness = image.mean(dim=0)
    mask = brightness > 0.5 * brightness.max()
    rows, cols = torch.nonzero(mask, as_tuple=True)
    height, width = brightness.shape
    return (float(cols.float().mean()) + 0.5) * 2 / width - 1, (float(rows.float().mean()) + 0.5) * 2 / height - 1


def test_move_points_follows_the_augmented_spot():
    size, batch = 64, 16
    rng = np.random.default_rng(3)
    images = torch.zeros(batch, 3, size, size)
    points = torch.empty(batch, 2)
    for index in range(batch):
        col, row = rng.integers(20, 44, 2)
        images[index, :, row - 2 : row + 3, col - 2 : col + 3] = 1.0
        points[index] = torch.tensor([(col + 0.5) * 2 / size - 1, (row + 0.5) * 2 / size - 1])
    augment = BatchAugment(flip_p=0.5, max_rotate=30.0, max_zoom=1.3, max_lighting=0.0, p_affine=1.0)
    params = augment.draw(rng, batch)
    out = augment(images, params, size)
    moved = move_points(augment, points, params)

    assert params.flip.any() and not params.flip.all()
    for index in range(batch):
        assert moved[index].tolist() == pytest.approx(_spot_centre(out[index]), abs=0.05)
    assert torch.isnan(move_points(augment, torch.full((1, 2), float("nan")), params.select([0]))).all()


def test_a_point_datablock_batch_carries_the_points_of_its_augmented_images(tmp_path):
    width, height = 96, 64
    rng = np.random.default_rng(0)
    centres = {}
    for index in range(12):
        x, y = rng.uniform(30, width - 30), rng.uniform(20, height - 20)
        image = Image.new("RGB", (width, height), (0, 0, 0))
        ImageDraw.Draw(image).ellipse([x - 4, y - 4, x + 4, y + 4], fill=(255, 255, 255))
        file = tmp_path / ("valid" if index >= 10 else "train") / f"{index}.png"
        file.parent.mkdir(exist_ok=True)
        image.save(file)
        centres[file] = (x, y)
    block = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files,
                      get_y=lambda file: torch.tensor(centres[file]),
                      splitter=FuncSplitter(lambda file: file.parent.name == "valid"),
                      batch_tfms=aug_transforms(size=48, max_rotate=20.0, max_lighting=0.0, max_warp=0.0))
    dls = block.dataloaders(tmp_path, bs=10, seed=5)
    dls.train.set_normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    images, points = dls.train.one_batch()
    for image, point in zip(images, points, strict=True):
        assert point.tolist() == pytest.approx(_spot_centre(image), abs=0.08)
    assert dls.valid_ds.items[0][1] == pytest.approx(scale_points(centres[dls.valid_ds.items[0][0]], (width, height)))


def test_a_point_target_on_an_unreadable_image_names_the_file(tmp_path):
    """Points are scaled by their image's size, read while labelling: a bad file there was a bare
    UnidentifiedImageError with no word of the points or of what to do."""
    for index in range(4):
        Image.new("RGB", (32, 24)).save(tmp_path / f"{index}.png")
    (tmp_path / "broken.png").write_text("not an image")
    block = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files,
                      get_y=lambda file: torch.tensor([5.0, 6.0]), splitter=FuncSplitter(lambda file: file.stem == "0"))
    with pytest.raises(DataError, match=r"broken\.png.*its points.*Fix or remove that file"):
        block.dataloaders(tmp_path, bs=2)
