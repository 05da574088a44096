"""ClassificationInterpretation: confusion matrix (rows actual), most_confused, top losses, report, plots."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from unfreeze.inference import ClassificationInterpretation, Interpretation
from unfreeze.train.learner import Learner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Dataset:
    """Just what the interpretation reads of a dataset: its length and the undecodable items."""

    def __init__(self, length: int) -> None:
        self.length, self.dropped = length, {}

    def __len__(self) -> int:
        return self.length


def interpretation(targets: list[int], preds: list[int], n_classes: int = 3) -> ClassificationInterpretation:
    """An interpretation over known predictions (confident one-hot-ish probabilities)."""
    logits = F.one_hot(torch.tensor(preds), n_classes).float() * 4.0
    probs, target_tensor = logits.softmax(dim=1), torch.tensor(targets)
    losses = F.cross_entropy(logits, target_tensor, reduction="none")
    dl = SimpleNamespace(dataset=_Dataset(len(targets)))
    return ClassificationInterpretation(dl, ["cat", "dog", "fox"][:n_classes], probs, target_tensor, losses)


def test_confusion_matrix_rows_are_actual_classes() -> None:
    interp = interpretation(targets=[0, 0, 0, 1, 1, 2], preds=[0, 1, 1, 1, 2, 2])
    expected = torch.tensor([[1, 2, 0], [0, 1, 1], [0, 0, 1]])
    assert torch.equal(interp.confusion_matrix(), expected)


def test_most_confused_sorted_by_count_with_threshold() -> None:
    interp = interpretation(targets=[0, 0, 0, 1, 1, 2, 2, 2], preds=[1, 1, 2, 0, 0, 0, 0, 0])
    assert interp.most_confused() == [("fox", "cat", 3), ("cat", "dog", 2), ("dog", "cat", 2), ("cat", "fox", 1)]
    assert interp.most_confused(min_val=3) == [("fox", "cat", 3)]


def test_top_losses_returns_the_largest_losses_and_their_indices() -> None:
    interp = interpretation(targets=[0, 1, 2, 0], preds=[0, 0, 2, 2])
    losses, indices = interp.top_losses(2)
    assert sorted(indices.tolist()) == [1, 3]
    assert torch.equal(losses, interp.losses[indices])
    assert len(interp.top_losses(None)[0]) == 4


def test_top_losses_without_k_returns_every_loss_as_fastais() -> None:
    # fastai: top_losses(k=None) sorts all the losses; a default of 9 cut a larger set short.
    interp = interpretation(targets=[0, 1, 2] * 4, preds=[0, 0, 2] * 4)
    losses, indices = interp.top_losses()
    assert len(losses) == len(indices) == 12
    assert losses.tolist() == sorted(interp.losses.tolist(), reverse=True)


def test_report_matches_torchmetrics() -> None:
    torchmetrics = pytest.importorskip("torchmetrics.functional.classification")
    targets, preds = [0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 1, 1, 2, 2, 2, 0, 2]
    report = interpretation(targets, preds).report()
    target_tensor, pred_tensor = torch.tensor(targets), torch.tensor(preds)
    for name, function in (("precision", torchmetrics.multiclass_precision), ("recall", torchmetrics.multiclass_recall),
                           ("f1", torchmetrics.multiclass_f1_score)):
        expected = function(pred_tensor, target_tensor, num_classes=3, average="none")
        assert [report[c][name] for c in ("cat", "dog", "fox")] == pytest.approx(expected.tolist(), abs=1e-6)
        macro = function(pred_tensor, target_tensor, num_classes=3, average="macro")
        assert report["macro avg"][name] == pytest.approx(float(macro), abs=1e-6)
    assert [report[c]["support"] for c in ("cat", "dog", "fox")] == [3, 2, 4]
    assert report["accuracy"]["accuracy"] == pytest.approx(5 / 9)
    text = interpretation(targets, preds).report(as_text=True)
    assert "precision" in text and "fox" in text and "macro avg" in text


def test_report_of_a_never_predicted_class_is_zero_not_nan() -> None:
    report = interpretation(targets=[0, 1, 2], preds=[0, 0, 0]).report()
    assert report["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.fixture(scope="module")
def sample_interp(sample_learner: Learner) -> ClassificationInterpretation:
    return ClassificationInterpretation.from_learner(sample_learner)


def test_from_learner_plots_confusion_matrix_and_top_losses(sample_interp: ClassificationInterpretation,
                                                            sample_preds: tuple, tmp_path: Path) -> None:
    interp = sample_interp
    assert interp.confusion_matrix().sum() == 200
    probs, targets, losses = sample_preds
    assert torch.equal(interp.targets, targets) and torch.equal(interp.probs, probs)
    assert torch.equal(interp.losses, losses)
    for normalize in (False, True):
        path = interp.plot_confusion_matrix(tmp_path / f"cm_{normalize}.png", normalize=normalize)
        assert path.read_bytes()[:8] == PNG_MAGIC
    top = interp.plot_top_losses(4, path=tmp_path / "top.png")
    assert top.read_bytes()[:8] == PNG_MAGIC and top.stat().st_size > 1000


def test_plot_texts_name_classes_labels_loss_and_probability(sample_learner: Learner,
                                                           sample_interp: ClassificationInterpretation,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unfreeze.plots as plots

    seen: dict[str, list[str]] = {}
    original_grid, original_cm = plots.plot_image_grid, plots.plot_confusion_matrix

    def grid(images: list, titles: list[str], path: Path, **options: object) -> Path:
        seen["titles"] = list(titles)
        return original_grid(images, titles, path, **options)

    def matrix(counts: object, names: list[str], path: Path, normalize: bool = False, **options: object) -> Path:
        seen["names"] = list(names)
        return original_cm(counts, names, path, normalize=normalize, **options)

    monkeypatch.setattr(plots, "plot_image_grid", grid)
    monkeypatch.setattr(plots, "plot_confusion_matrix", matrix)
    interp = sample_interp
    interp.plot_top_losses(3, path=tmp_path / "top.png")
    interp.plot_confusion_matrix(tmp_path / "cm.png")
    assert seen["names"] == sample_learner.dls.vocab
    losses, indices = interp.top_losses(3)
    first = seen["titles"][0]
    predicted = sample_learner.dls.vocab[int(interp.preds[indices[0]])]
    actual = sample_learner.dls.vocab[int(interp.targets[indices[0]])]
    probability = float(interp.probs[indices[0], interp.preds[indices[0]]])
    assert first == f"{actual} → {predicted} ({probability:.2f})\nloss {losses[0]:.2f}"


def test_plot_top_losses_takes_fastais_arguments_and_refuses_a_path_in_largest(
        sample_interp: ClassificationInterpretation, tmp_path: Path) -> None:
    path = sample_interp.plot_top_losses(4, largest=False, path=tmp_path / "best.png", nrows=1, figsize=(8, 2))
    assert path.stat().st_size > 1000
    with pytest.raises(TypeError, match="path="):
        sample_interp.plot_top_losses(4, tmp_path / "top.png")  # the old positional path
    assert Interpretation is ClassificationInterpretation


def test_confident_examples_are_the_surest_right_and_wrong_predictions() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.3, 0.5, 0.2],
                          [0.34, 0.33, 0.33]])
    targets = torch.tensor([0, 0, 0, 1, 1, 2])  # right: 0 (0.9), 1 (0.6), 4 (0.5); wrong: 3 (0.8), 2 (0.7), 5
    losses = F.nll_loss(probs.log(), targets, reduction="none")
    dl = SimpleNamespace(dataset=_Dataset(6))
    interp = ClassificationInterpretation(dl, ["cat", "dog", "fox"], probs, targets, losses)
    assert interp.confident_examples(2) == ([0, 1], [3, 2])
    assert interp.confident_examples(10) == ([0, 1, 4], [3, 2, 5])
