"""flip='auto': `check_flips` on handed and on mirror-symmetric images, and how fit_recipe uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unfreeze.data import ImageDataLoaders
from unfreeze.train import flip_check, recommended
from unfreeze.train.builders import vision_learner
from unfreeze.train.flip_check import FlipCheck, check_flips

# Strokes on an 8×8 grid: L and J are each other's mirror image (handed); T, H and O are their own.
SHAPES = {
    "L": [(r, 1) for r in range(1, 7)] + [(6, c) for c in range(2, 6)],
    "J": [(r, 6) for r in range(1, 7)] + [(6, c) for c in range(2, 6)],
    "T": [(1, c) for c in range(1, 7)] + [(r, 3) for r in range(2, 7)] + [(r, 4) for r in range(2, 7)],
    "H": [(r, 1) for r in range(1, 7)] + [(r, 6) for r in range(1, 7)] + [(3, c) for c in range(2, 6)],
    "O": [(1, c) for c in range(2, 6)] + [(6, c) for c in range(2, 6)] + [(r, 1) for r in range(2, 6)]
    + [(r, 6) for r in range(2, 6)],
}


def write_shapes(root: Path, classes: tuple[str, ...], n_train: int = 40, n_valid: int = 4) -> Path:
    """Each class's strokes scaled to 32 px at a random offset, over noise."""
    rng = np.random.default_rng(0)
    for name in classes:
        grid = np.zeros((8, 8), dtype=np.float32)
        for row, col in SHAPES[name]:
            grid[row, col] = 1.0
        for split, count in (("train", n_train), ("valid", n_valid)):
            for index in range(count):
                canvas = rng.uniform(0, 60, (40, 40))
                top, left = rng.integers(0, 9, 2)
                canvas[top : top + 32, left : left + 32] += 190 * np.kron(grid, np.ones((4, 4)))
                path = root / split / name / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(path)
    return root


def make_learner(root: Path, **kwargs):
    dls = ImageDataLoaders.from_folder(root, size=32, bs=16, seed=0, num_workers=0)
    return vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0, **kwargs)


def test_handed_images_get_no_flips(tmp_path: Path) -> None:
    check = check_flips(make_learner(write_shapes(tmp_path, ("L", "J", "T"))))
    assert isinstance(check, FlipCheck) and check.flips is False
    assert check.error_mirrored > 2 * check.error and check.n_items == 120
    assert "flips off" in check.note() and "--flip" in check.note()


def test_mirror_symmetric_images_keep_flips(tmp_path: Path) -> None:
    check = check_flips(make_learner(write_shapes(tmp_path, ("T", "H", "O"))))
    assert check is not None and check.flips is True
    assert check.error_mirrored <= check.error + 0.1
    assert check.note().startswith("flip='auto': flips on")


def test_check_flips_samples_at_most_max_items_and_keeps_the_model_mode(tmp_path: Path) -> None:
    learn = make_learner(write_shapes(tmp_path, ("T", "H", "O")))
    learn.model.train()
    assert check_flips(learn, max_items=30).n_items == 30
    assert learn.model.training
    assert check_flips(learn, max_items=10) is None  # too few images to judge: the caller keeps flips


def test_fit_recipe_decides_flips_once_records_it_and_a_resume_reuses_it(tmp_path: Path, monkeypatch) -> None:
    root = write_shapes(tmp_path / "data", ("L", "J", "T"), n_train=24)
    learn = make_learner(root)
    learn.fit_recipe(1, freeze_epochs=0, checkpoint=tmp_path / "ckpt.pt")
    assert learn.progress.recipe["flip"] == "auto" and learn.progress.recipe["flip_chosen"] is False
    assert any("flips off" in note for note in learn.recorder.notes)
    # The resumed fit takes the decision from the checkpoint instead of checking again.
    monkeypatch.setattr(recommended, "check_flips", lambda *args, **kwargs: pytest.fail("checked again on resume"))
    again = make_learner(root)
    again.fit_recipe(1, freeze_epochs=0, checkpoint=tmp_path / "ckpt2.pt", resume=tmp_path / "ckpt.pt")
    assert again.progress.recipe["flip_chosen"] is False


@pytest.mark.parametrize("flip,augment", [(True, "default"), (False, "default"), ("auto", "none")])
def test_no_check_when_flips_are_given_or_there_is_no_augmentation(tmp_path: Path, monkeypatch, flip, augment) -> None:
    monkeypatch.setattr(recommended, "check_flips", lambda *args, **kwargs: pytest.fail("checked"))
    learn = make_learner(write_shapes(tmp_path, ("T", "H"), n_train=8))
    learn.fit_recipe(1, freeze_epochs=0, flip=flip, augment=augment)
    assert learn.dls.train.augment is not None


def write_rendered_digits(root: Path, n_per_class: int = 30) -> Path:
    """Digits 2, 3, 4, 5, 7 drawn with Pillow's own font at random sizes and offsets (handed glyphs)."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(0)
    for digit in "23457":
        for index in range(n_per_class + 4):
            image = Image.new("L", (48, 48), color=int(rng.integers(0, 40)))
            font = ImageFont.load_default(size=int(rng.integers(26, 36)))
            ImageDraw.Draw(image).text((int(rng.integers(6, 18)), int(rng.integers(0, 8))), digit, fill=230, font=font)
            split = "train" if index < n_per_class else "valid"
            path = root / split / digit / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    return root


@pytest.mark.slow
def test_with_the_bundled_weights_digits_are_handed_and_clothes_are_not(tmp_path: Path, sample_dir: Path) -> None:
    digits = ImageDataLoaders.from_folder(write_rendered_digits(tmp_path), size=64, bs=32, seed=0, num_workers=0)
    check = check_flips(vision_learner(digits, "efficientnet_lite0", quiet=True, seed=0))
    assert check is not None and check.flips is False, check
    clothes = ImageDataLoaders.from_folder(sample_dir, size=64, bs=32, seed=0, num_workers=0)
    check = check_flips(vision_learner(clothes, "efficientnet_lite0", quiet=True, seed=0))
    assert check is not None and check.flips is True, check


def test_a_long_tail_is_sampled_evenly_and_classes_too_small_to_judge_are_left_out(tmp_path: Path) -> None:
    # Issue 27: on a long tail the probe saw the classes in proportion (400 down to 8 images) and its
    # verdict followed the large classes; now each class that can be cross-validated gives as many.
    root = write_shapes(tmp_path, ("T", "H", "O"), n_train=60)
    for index in range(2, 60):  # "O" keeps 2 images, too few to judge
        (root / "train" / "O" / f"{index}.png").unlink()
    for index in range(30, 60):  # "H" keeps 30
        (root / "train" / "H" / f"{index}.png").unlink()
    learn = make_learner(root)
    seen = flip_check._balanced_sample(learn.dls.train.dataset.targets, 500, 0)
    counts = torch.bincount(learn.dls.train.dataset.targets[torch.as_tensor(seen)], minlength=3).tolist()
    vocab = learn.dls.vocab
    assert counts[vocab.index("T")] == counts[vocab.index("H")] == 30 and counts[vocab.index("O")] == 0


def test_few_images_per_class_leave_flips_on_without_a_verdict(tmp_path: Path) -> None:
    # Issue 27: 10 images per class are too few for a 2-fold probe to tell handed images from chance.
    learn = make_learner(write_shapes(tmp_path, ("L", "J", "T"), n_train=10))
    assert check_flips(learn) is None
    learn.fit_recipe(1, freeze_epochs=0)
    assert learn.progress.recipe["flip_chosen"] is True
    assert any(note.startswith("flip='auto': flips on (fewer than two classes") for note in learn.recorder.notes)
