"""get_preds, predict, predict_batch and tta on a random-weight learner and the committed sample."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unfreeze.data import DataError, DataWarning, ImageDataLoaders
from unfreeze.inference import get_preds, predict, predict_batch, tta
from unfreeze.losses import LabelSmoothingCrossEntropy
from unfreeze.tasks.item_losses import unreduced_loss
from unfreeze.train.builders import vision_learner
from unfreeze.train.learner import Learner

Preds = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def valid_paths(learn: Learner) -> list[Path]:
    return [path for path, _ in learn.dls.valid.dataset.items]


def test_get_preds_is_ordered_softmax_with_targets(sample_learner: Learner, sample_preds: Preds) -> None:
    probs, targets, _ = sample_preds
    assert probs.shape == (200, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(200))
    assert targets.tolist() == sample_learner.dls.valid.dataset.labels()
    # Batching must not change the order or the values.
    small_batches = sample_learner.dls.test_dl(valid_paths(sample_learner)[:30], batch_size=7)
    probs_small, _ = get_preds(sample_learner, small_batches)
    torch.testing.assert_close(probs_small, probs[:30], atol=1e-6, rtol=1e-5)
    assert torch.equal(sample_learner.get_preds()[0], probs)  # repeatable


def test_get_preds_with_loss_is_per_item_cross_entropy(sample_learner: Learner, sample_preds: Preds) -> None:
    probs, targets, losses = sample_preds
    expected = F.nll_loss(probs.log(), targets, reduction="none")
    torch.testing.assert_close(losses, expected, atol=1e-5, rtol=1e-5)
    unlabelled = sample_learner.dls.test_dl(valid_paths(sample_learner)[:3])
    _, test_targets, test_losses = get_preds(sample_learner, unlabelled, with_loss=True)
    assert test_targets.tolist() == [-1, -1, -1] and torch.isnan(test_losses).all()


def _doubled_with_keyword(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return 2 * F.cross_entropy(logits, targets, reduction=reduction)


def _doubled_reduced(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 2 * F.cross_entropy(logits, targets)


@pytest.mark.parametrize("kind", ["module", "keyword", "no-reduction"])
def test_get_preds_with_loss_uses_the_learners_own_loss(sample_dir: Path, kind: str) -> None:
    # fastai's with_loss is the learner's loss_func per item; it was always plain cross-entropy here.
    loss_func = {"module": LabelSmoothingCrossEntropy(eps=0.3), "keyword": _doubled_with_keyword,
                 "no-reduction": _doubled_reduced}[kind]
    dls = ImageDataLoaders.from_folder(sample_dir, size=32, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, seed=0, device="cpu", quiet=True, loss_func=loss_func)
    logits, targets = learn.collect_logits(learn.dls.valid)
    _, _, losses = learn.get_preds(with_loss=True)
    cross_entropy = F.cross_entropy(logits, targets, reduction="none")
    if kind == "module":
        expected = LabelSmoothingCrossEntropy(eps=0.3, reduction="none")(logits, targets)
        assert loss_func.reduction == "mean"  # the learner's own loss is left as it was
    else:
        expected = 2 * cross_entropy
    torch.testing.assert_close(losses, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(losses, cross_entropy, atol=1e-3)
    assert float(losses.mean()) == pytest.approx(learn.validate()["valid_loss"], rel=1e-4)


class _IgnoresReduction(torch.nn.Module):
    reduction = "mean"  # has the attribute, but forward always reduces

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)


def test_unreduced_loss_averages_per_item_values_and_calls_a_reducing_loss_item_by_item() -> None:
    from unfreeze.losses import MSELossFlat

    logits, targets = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2, 1, 0])
    cross_entropy = F.cross_entropy(logits, targets, reduction="none")
    points = torch.rand(4, 3)  # MSELossFlat flattens: reduction="none" gives 12 values, 3 an item
    torch.testing.assert_close(unreduced_loss(MSELossFlat(), logits, points), ((logits - points) ** 2).mean(dim=1))
    torch.testing.assert_close(unreduced_loss(_IgnoresReduction(), logits, targets), cross_entropy)
    torch.testing.assert_close(unreduced_loss(lambda out, y, **kwargs: F.cross_entropy(out, y), logits, targets),
                               cross_entropy)


def test_get_preds_on_training_loader_keeps_dataset_order(make_image_folder: Callable[..., Path],
                                                          tiny_learner_factory: Callable[..., Learner]) -> None:
    learn = tiny_learner_factory(make_image_folder(classes=("cat", "dog", "fox"), n_train=5), size=16, bs=4)
    _, targets = learn.get_preds(dl=learn.dls.train)
    assert targets.tolist() == learn.dls.train.dataset.labels() == [0] * 5 + [1] * 5 + [2] * 5


def test_predict_accepts_path_pil_array_and_tensor(sample_learner: Learner, sample_preds: Preds) -> None:
    path = valid_paths(sample_learner)[5]
    probs = sample_preds[0]
    label, index, item_probs = sample_learner.predict(path)
    assert index == int(probs[5].argmax()) and label == sample_learner.dls.vocab[index]
    torch.testing.assert_close(item_probs, probs[5], atol=1e-6, rtol=1e-5)
    pil = Image.open(path).convert("RGB")
    array = np.array(pil)
    for item in (pil, array, torch.from_numpy(array).permute(2, 0, 1), str(path)):
        torch.testing.assert_close(predict(sample_learner, item)[2], item_probs, atol=1e-6, rtol=1e-5)


def test_predict_refuses_unreadable_and_missing_files(sample_learner: Learner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        sample_learner.predict(broken)
    with pytest.raises(DataError, match="do not exist"):
        sample_learner.predict(tmp_path / "missing.png")


def test_predict_batch_streams_a_folder_and_matches_get_preds(sample_learner: Learner, sample_dir: Path,
                                                              sample_preds: Preds) -> None:
    rows = sample_learner.predict_batch(sample_dir / "valid" / "Bag", bs=7)
    assert not isinstance(rows, list)  # a generator: nothing is decoded before it is consumed
    rows = list(rows)
    bag = [index for index, (_, label) in enumerate(sample_learner.dls.valid.dataset.items) if label == "Bag"]
    assert [row["path"] for row in rows] == [str(valid_paths(sample_learner)[index]) for index in bag]
    probs = sample_preds[0][bag]
    assert [row["index"] for row in rows] == probs.argmax(dim=1).tolist()
    np.testing.assert_allclose([row["prob"] for row in rows], probs.max(dim=1).values.numpy(), rtol=1e-5)
    assert all(row["error"] is None and row["label"] in sample_learner.dls.vocab for row in rows)


def test_predict_batch_is_lazy_on_an_endless_stream(sample_learner: Learner) -> None:
    endless = itertools.cycle(valid_paths(sample_learner)[:4])
    first = list(itertools.islice(predict_batch(sample_learner, endless, bs=3), 5))
    assert [row["path"] for row in first] == [str(p) for p in valid_paths(sample_learner)[:4]] + [first[0]["path"]]


def test_predict_batch_reports_bad_files_without_crashing(sample_learner: Learner, tmp_path: Path) -> None:
    good = valid_paths(sample_learner)[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    items = [good[0], broken, tmp_path / "gone.png", np.zeros((20, 20, 3), np.uint8), good[1]]
    with pytest.warns(DataWarning, match="2 images that could not be predicted"):
        rows = list(sample_learner.predict_batch(items, bs=2))
    assert [row["error"] is None for row in rows] == [True, False, False, True, True]
    assert rows[1]["label"] is None and rows[1]["index"] == -1 and "broken.jpg" in rows[1]["path"]
    assert rows[2]["error"] == "file not found"
    assert rows[3]["path"] == "<in-memory image 3>"
    assert rows[4]["index"] == sample_learner.predict(good[1])[1]


def test_predict_batch_warns_nothing_when_all_files_are_good(sample_learner: Learner) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = list(predict_batch(sample_learner, valid_paths(sample_learner)[:3]))
    assert len(rows) == 3


def test_tta_mixes_augmented_and_plain_passes_deterministically(sample_learner: Learner) -> None:
    dl = sample_learner.dls.test_dl(valid_paths(sample_learner)[:40])
    (augmented, plain), targets = tta(sample_learner, dl=dl, n=2, beta=None)
    probs, targets_mixed = sample_learner.tta(dl=dl, n=2, beta=0.25)
    torch.testing.assert_close(probs, 0.75 * augmented + 0.25 * plain)
    assert torch.equal(targets, targets_mixed) and targets.tolist() == [-1] * 40
    torch.testing.assert_close(plain, get_preds(sample_learner, dl)[0])
    assert not torch.allclose(augmented, plain)  # the augmented passes do augment
    again, _ = sample_learner.tta(dl=dl, n=2, beta=0.25)
    assert torch.equal(again, probs)


def test_tta_defaults_use_the_validation_set(sample_learner: Learner) -> None:
    probs, targets = sample_learner.tta(n=1)
    assert probs.shape == (200, 10) and targets.tolist() == sample_learner.dls.valid.dataset.labels()
    with pytest.raises(ValueError, match="n must be"):
        sample_learner.tta(n=0)
