"""Tasks: single- and multi-label data end to end (encoding, loss, metrics, prediction, export), class
imbalance (weighted loss, balanced sampling) and top-k predictions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from unfreeze import ImageDataLoaders, MultiLabel, SingleLabel, load_learner, vision_learner
from unfreeze.inference import ClassificationInterpretation
from unfreeze.tasks import Regression, task_from_config
from unfreeze.train.metrics import accuracy_multi, f1_multi, resolve_metrics


@pytest.fixture
def multi_label_data(make_image_folder) -> Path:
    """Image folders plus labels.csv whose cells list 0, 1 or 2 classes separated by spaces."""
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=6, n_valid=2, flat=True)
    rows = ["file,labels"]
    for index, path in enumerate(sorted(root.rglob("*.png"))):
        extra = ["", " dog", " dog"][index % 3]
        rows.append(f"{path.relative_to(root)},{path.parent.name if index % 4 else ''}{extra}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_single_label_encoding_and_decoding() -> None:
    task = SingleLabel()
    assert task.encode(["b", "", "zzz"], ["a", "b"]).tolist() == [1, -1, -1]
    assert task.labels_of(task.decode(torch.tensor([[0.1, 0.9]]))[0], ["a", "b"]) == "b"
    assert task.balanced_weights(torch.tensor([0, 0, 0, 1, -1]), 3).tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


def test_multi_label_encoding_decoding_and_unlabelled_rows() -> None:
    task = MultiLabel(threshold=0.4)
    targets = task.encode([("a", "c"), (), None], ["a", "b", "c"])
    assert targets[:2].tolist() == [[1, 0, 1], [0, 0, 0]] and targets[2].isnan().all()
    assert task.labelled(targets).tolist() == [True, True, False]
    assert task.labels_of(task.decode(torch.tensor([[0.5, 0.3, 0.45]]))[0], ["a", "b", "c"]) == ("a", "c")
    losses = task.item_losses(torch.zeros(3, 3), targets)
    assert losses[:2].tolist() == pytest.approx([0.6931, 0.6931], abs=1e-4) and losses[2].isnan()
    with pytest.raises(ValueError, match="threshold"):
        MultiLabel(threshold=1.5)
    assert task_from_config(task.config()) == task and task_from_config(None) == SingleLabel()


def test_multi_label_metrics_by_hand() -> None:
    logits = torch.tensor([[4.0, -4.0, 4.0], [-4.0, 4.0, -4.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert accuracy_multi(logits, targets) == pytest.approx(4 / 6)
    # class a: tp1 → 1; class b: tp1 → 1; class c: fp1 fn1 tp0 → 0
    assert f1_multi(logits, targets) == pytest.approx(2 / 3)
    [bound] = resolve_metrics(["accuracy_multi"], MultiLabel(threshold=0.99))
    assert bound.__name__ == "accuracy_multi" and bound(torch.full((1, 3), 4.0), torch.ones(1, 3)) == 0.0
    with pytest.raises(ValueError, match="multi-label"):
        resolve_metrics(["error_rate"], MultiLabel())


def test_multi_label_trains_predicts_and_exports(multi_label_data: Path, tmp_path: Path) -> None:
    dls = ImageDataLoaders.from_csv(multi_label_data, "labels.csv", label_delim=" ", size=16, bs=4, seed=0,
                                    num_workers=0)
    assert isinstance(dls.task, MultiLabel) and dls.vocab == ["ant", "bee", "cat", "dog"]
    assert dls.train.dataset.targets.dtype == torch.float32 and dls.train.dataset.targets.shape[1] == 4
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=dls.task.default_metrics(), seed=0,
                           quiet=True)
    assert isinstance(learn.loss_func, torch.nn.BCEWithLogitsLoss)
    learn.fine_tune(1)
    assert set(learn.recorder.history[-1]) >= {"accuracy_multi", "f1_multi"}
    image = next(multi_label_data.rglob("*.png"))
    labels, mask, probs = learn.predict(image)
    # fastai's shape: a list-like MultiCategory of class names first
    assert isinstance(labels, (tuple, list)) and all(isinstance(name, str) for name in labels)
    assert mask.dtype == torch.bool and torch.equal(mask, probs >= 0.5)
    assert probs.min() >= 0 and probs.max() <= 1 and not torch.isclose(probs.sum(), torch.tensor(1.0))
    row = next(learn.predict_batch([image], top_k=2))
    assert row["label"] == list(labels) and len(row["top_k"]) == 2
    report = ClassificationInterpretation.from_learner(learn).report()
    assert set(report) >= {"ant", "dog", "macro avg"}
    learn.export(tmp_path / "model.unfreeze")
    loaded = load_learner(tmp_path / "model.unfreeze")
    assert loaded.task == learn.task
    assert torch.allclose(loaded.predict(image)[2], probs, atol=1e-5)


def test_class_weights_auto_weigh_rare_classes_more(make_image_folder) -> None:
    root = make_image_folder(classes=("ant", "bee"), n_train=2, n_valid=1)
    for index in range(6):  # 8 ants, 2 bees
        (root / "train" / "ant" / f"ant_{index}.png").write_bytes((root / "train" / "ant" / "ant_0.png").read_bytes())
        (root / "train" / "ant" / f"copy_{index}.png").write_bytes((root / "train" / "ant" / "ant_1.png").read_bytes())
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    counts = Counter(dls.train.dataset.labels())
    learn = vision_learner(dls, "test_resnet", pretrained=False, class_weights="auto", quiet=True)
    expected = [len(dls.train.dataset) / (2 * counts[0]), len(dls.train.dataset) / (2 * counts[1])]
    assert learn.loss_func.weight.tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="2 positive numbers"):
        vision_learner(dls, "test_resnet", pretrained=False, class_weights=[1.0], quiet=True)


def test_balanced_sampling_draws_classes_about_equally(make_image_folder) -> None:
    root = make_image_folder(classes=("ant", "bee"), n_train=2, n_valid=1)
    for index in range(18):
        (root / "train" / "ant" / f"more_{index}.png").write_bytes((root / "train" / "ant" / "ant_0.png").read_bytes())
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0).balance_classes()
    labels = dls.train.dataset.labels()
    drawn = Counter(labels[index] for epoch in range(20) for index in (dls.train.set_epoch(epoch) or
                                                                         dls.train._order()))
    assert labels.count(0) == 10 * labels.count(1)  # 20 ants, 2 bees
    assert 0.4 < drawn[1] / sum(drawn.values()) < 0.6


def test_top_k_rows_list_the_most_probable_classes(make_image_folder) -> None:
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=4, n_valid=2)
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True)
    images = sorted(root.rglob("*.png"))[:3]
    probs, _ = learn.get_preds(dl=dls.test_dl(images))
    rows = list(learn.predict_batch(images, top_k=3))
    for row, item_probs in zip(rows, probs, strict=True):
        assert [label for label, _ in row["top_k"]] == [dls.vocab[i] for i in item_probs.argsort(descending=True)]
        assert row["top_k"][0][0] == row["label"]
    with pytest.raises(ValueError, match="top_k"):
        next(learn.predict_batch(images, top_k=0))


def test_regression_task_encodes_numbers_and_round_trips_its_config() -> None:
    task = Regression(points=True, loss_name="l1")
    targets = task.encode([(0.5, -0.5), None], ["x0", "y0"])
    assert targets[0].tolist() == [0.5, -0.5] and targets[1].isnan().all()
    assert task.labelled(targets).tolist() == [True, False]
    losses = task.item_losses(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), targets)
    assert losses[0].item() == pytest.approx(0.5) and losses[1].isnan()
    assert task_from_config(task.config()) == task and task.labels_of(torch.tensor([0.25, 1.0]), []) == (0.25, 1.0)
    with pytest.raises(ValueError, match="one number per output"):
        task.encode([(1.0,)], ["x0", "y0"])
    with pytest.raises(ValueError, match="regression data has none"):
        task.balanced_weights(targets, 2)
    with pytest.raises(ValueError, match="apply to classification"):
        task.loss(label_smoothing=0.1)
