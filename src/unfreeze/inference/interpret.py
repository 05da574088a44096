"""ClassificationInterpretation: where a classifier goes wrong (fastai's, plus a per-class report)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unfreeze.inference.predict import Predictor, _ordered, get_preds, loader_of
from unfreeze.tasks import MultiLabel, SingleLabel, Task

__all__ = ["ClassificationInterpretation", "Interpretation"]


class ClassificationInterpretation:
    """Predictions, targets and losses of a learner over one loader, and views of its mistakes.

    Positions in `probs`, `targets` and `losses` follow the loader's items, skipping undecodable ones;
    `item_indices` maps each position back to its index in `dl.dataset`.

    Example:
        >>> interp = ClassificationInterpretation.from_learner(learn)  # doctest: +SKIP
        >>> interp.most_confused(min_val=2)  # doctest: +SKIP
        [('Shirt', 'T-shirt_top', 7), ('Pullover', 'Coat', 4)]
    """

    def __init__(self, dl: Any, vocab: list[str], probs: torch.Tensor, targets: torch.Tensor,
                 losses: torch.Tensor, task: Task | None = None) -> None:
        self.dl, self.vocab = dl, list(vocab)
        self.task: Task = task if task is not None else SingleLabel()
        self.probs, self.targets, self.losses = probs, targets, losses
        self.preds = self.task.decode(probs)  # class indices, or a bool mask per item for multi-label
        dropped = getattr(dl.dataset, "dropped", {})
        self.item_indices = torch.tensor([i for i in range(len(dl.dataset)) if i not in dropped], dtype=torch.long)

    @classmethod
    def from_learner(cls, learn: Predictor, ds_idx: int = 1, dl: Any = None,
                     act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ClassificationInterpretation:
        """Run `learn` over `dl` (default: validation, or with fastai's `ds_idx=0` the training images in
        order with the validation transforms) and keep what the views need.

        fastai's `act` replaces the activation that turns the logits into `probs` (None: the task's, calibrated),
        as in `get_preds`; the losses are the loss function's either way.

        Example:
            >>> interp = ClassificationInterpretation.from_learner(learn)  # doctest: +SKIP
            >>> on_train = ClassificationInterpretation.from_learner(learn, ds_idx=0)  # doctest: +SKIP
        """
        if learn.task.name == "regression":
            raise ValueError("ClassificationInterpretation reads classes; this learner predicts numbers. Use "
                             "learn.show_results(), learn.get_preds() with unfreeze.plots.plot_predicted_vs_true, or "
                             "unfreeze.inference.regression.regression_report.")
        loader = _ordered(loader_of(learn.dls, ds_idx) if dl is None else dl)
        probs, targets, losses = get_preds(learn, loader, with_loss=True, act=act)
        return cls(loader, learn.dls.vocab, probs, targets, losses, learn.task)

    def confusion_matrix(self) -> torch.Tensor:
        """Counts [C, C]: row = actual class, column = predicted class (unlabelled items left out).

        Example:
            >>> interp.confusion_matrix()  # doctest: +SKIP
            tensor([[18,  2], [ 1, 19]])
        """
        self._single_label_only("confusion_matrix")
        n_classes = len(self.vocab)
        labelled = self.targets >= 0
        pairs = self.targets[labelled] * n_classes + self.preds[labelled]
        return torch.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)

    def plot_confusion_matrix(self, path: str | Path | None = None, normalize: bool = False, *,
                              figsize: tuple[float, float] | None = None, dpi: int = 100,
                              title: str = "Confusion matrix", cmap: str = "Blues", norm_dec: int = 2,
                              plot_txt: bool = True) -> Any:
        """The confusion matrix with the class names on both axes, under `title` (fastai's default).

        With `path`, saved there and the path returned; without, shown inline in a notebook, or in a
        script saved as confusion_matrix.png with its location printed. `figsize` (inches), `dpi`, `cmap`,
        `norm_dec` (decimals when normalized) and `plot_txt` (False: no numbers) as in fastai.

        Example:
            >>> interp.plot_confusion_matrix("cm.png", normalize=True)  # doctest: +SKIP
            PosixPath('cm.png')
            >>> interp.plot_confusion_matrix(figsize=(6, 6))  # in a notebook  # doctest: +SKIP
        """
        from unfreeze.plots import plot_confusion_matrix  # matplotlib loads only when a figure is drawn

        return plot_confusion_matrix(self.confusion_matrix().numpy(), self.vocab, path, normalize=normalize,
                                     figsize=figsize, dpi=dpi, title=title, cmap=cmap, norm_dec=norm_dec,
                                     plot_txt=plot_txt)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """Off-diagonal cells with at least `min_val` items: (actual, predicted, count), most first.

        Example:
            >>> interp.most_confused()  # doctest: +SKIP
            [('dog', 'cat', 2), ('cat', 'dog', 1)]
        """
        self._single_label_only("most_confused")
        matrix = self.confusion_matrix()
        cells = [(self.vocab[actual], self.vocab[predicted], int(matrix[actual, predicted]))
                 for actual in range(len(self.vocab)) for predicted in range(len(self.vocab))
                 if actual != predicted and matrix[actual, predicted] >= min_val]
        return sorted(cells, key=lambda cell: -cell[2])  # stable: ties keep (actual, predicted) order

    def top_losses(self, k: int | None = None, largest: bool = True, items: bool = False) -> tuple[Any, ...]:
        """The `k` largest losses (all when None, as in fastai) and the dataset indices of their items;
        with fastai's `items=True` also the items themselves (the image files), third.

        Example:
            >>> losses, indices = interp.top_losses(5)  # doctest: +SKIP
            >>> losses, indices, files = interp.top_losses(5, items=True)  # doctest: +SKIP
        """
        labelled = torch.nonzero(self.task.labelled(self.targets)).flatten()
        k = len(labelled) if k is None else min(k, len(labelled))
        losses, order = torch.topk(self.losses[labelled], k, largest=largest)
        indices = self.item_indices[labelled[order]]
        if not items:
            return losses, indices
        return losses, indices, [self.dl.dataset.items[index][0] for index in indices.tolist()]

    def plot_top_losses(self, k: int = 9, largest: bool = True, *, path: str | Path | None = None,
                        nrows: int | None = None, ncols: int | None = None,
                        figsize: tuple[float, float] | None = None) -> Any:
        """The `k` worst-predicted images (best with `largest=False`), titled "actual → predicted
        (probability)" and the loss.

        The probability is the one the model gave its (wrong or right) prediction; for multi-label data
        each predicted class shows its own. Long captions are wrapped so neighbours never overlap.
        `path` as in `plot_confusion_matrix` (default file top_losses.png); `nrows`, `ncols` and
        `figsize` shape the grid as in fastai.

        Example:
            >>> interp.plot_top_losses(9, path="top.png")  # doctest: +SKIP
            PosixPath('top.png')
            >>> interp.plot_top_losses(9, nrows=3, figsize=(9, 9))  # in a notebook  # doctest: +SKIP
        """
        from unfreeze.plots import plot_image_grid, top_loss_title  # matplotlib loads only when a figure is drawn

        if not isinstance(largest, bool):
            raise TypeError(f"largest must be True or False, got {largest!r}; pass a file as path=, e.g. "
                            "plot_top_losses(9, path='top.png').")
        losses, indices = self.top_losses(k, largest=largest)
        positions = {int(index): position for position, index in enumerate(self.item_indices.tolist())}
        images = self.dl.decode_uint8(indices)
        titles = []
        for loss, index in zip(losses.tolist(), indices.tolist(), strict=True):
            position = positions[index]
            if isinstance(self.task, MultiLabel):
                chosen = torch.nonzero(self.preds[position]).flatten().tolist()
                actual_names = self.task.labels_of(self.targets[position] > 0.5, self.vocab)
                titles.append(top_loss_title(actual_names, [self.vocab[i] for i in chosen],
                                             [float(self.probs[position, i]) for i in chosen], loss))
                continue
            predicted, actual = int(self.preds[position]), int(self.targets[position])
            titles.append(top_loss_title(self.vocab[actual], self.vocab[predicted],
                                         float(self.probs[position, predicted]), loss))
        pictures = [image.permute(1, 2, 0).numpy() for image in images]
        return plot_image_grid(pictures, titles, path, nrows=nrows, ncols=ncols, figsize=figsize,
                               default_name="top_losses.png")

    def confident_examples(self, k: int = 6) -> tuple[list[int], list[int]]:
        """Positions (into `probs`) of the `k` most confident right and the `k` most confident wrong predictions.

        Single-label data only; the confidence is the probability of the predicted class.

        Example:
            >>> right, wrong = interp.confident_examples(6)  # doctest: +SKIP
        """
        self._single_label_only("confident_examples")
        labelled = torch.nonzero(self.targets >= 0).flatten()
        confidence = self.probs.max(dim=1).values
        correct = self.preds[labelled] == self.targets[labelled]
        chosen = []
        for mask in (correct, ~correct):
            positions = labelled[mask]
            order = torch.argsort(confidence[positions], descending=True, stable=True)[:k]
            chosen.append(positions[order].tolist())
        return chosen[0], chosen[1]

    def plot_confident_examples(self, k: int = 6, path: str | Path | None = None) -> Any:
        """The most confident right predictions above the most confident wrong ones (report.html shows it).

        Each image is titled "actual → predicted (probability)" for a wrong one, "predicted (probability)"
        for a right one. `path` as in `plot_confusion_matrix` (default file examples.png).

        Example:
            >>> interp.plot_confident_examples(6, "examples.png")  # doctest: +SKIP
            PosixPath('examples.png')
        """
        from unfreeze.plots import plot_confident_examples  # matplotlib loads only when a figure is drawn

        right, wrong = self.confident_examples(k)
        groups = []
        for positions, is_right in ((right, True), (wrong, False)):
            indices = self.item_indices[torch.tensor(positions, dtype=torch.long)] if positions else torch.empty(
                0, dtype=torch.long)
            images = self.dl.decode_uint8(indices) if positions else []
            captions = []
            for position in positions:
                predicted, actual = int(self.preds[position]), int(self.targets[position])
                probability = float(self.probs[position, predicted])
                guess = f"{self.vocab[predicted]} ({probability:.2f})"
                captions.append(guess if is_right else f"{self.vocab[actual]} → {guess}")
            groups.append([(image.permute(1, 2, 0).numpy(), caption)
                           for image, caption in zip(images, captions, strict=True)])
        return plot_confident_examples(groups[0], groups[1], path, columns=k)

    def report(self, as_text: bool = False) -> dict[str, dict[str, float]] | str:
        """Per-class precision, recall, F1 and support, plus macro and weighted averages and accuracy.

        Computed from `confusion_matrix()`; a class never predicted has precision 0 (and likewise for
        recall and F1), as scikit-learn's `zero_division=0`. Multi-label data counts each class over the
        items (a one-vs-rest report); accuracy there is the fraction of (item, class) decisions right.

        Args:
            as_text: Return a printable table instead of the dict.

        Example:
            >>> interp.report()["cat"]  # doctest: +SKIP
            {'precision': 0.95, 'recall': 0.9, 'f1': 0.923, 'support': 20}
            >>> print(interp.report(as_text=True))  # doctest: +SKIP
        """
        true_positive, predicted, support = self._class_counts()
        precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), 0.0)
        recall = torch.where(support > 0, true_positive / support.clamp(min=1), 0.0)
        denominator = precision + recall
        f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), 0.0)
        rows: dict[str, dict[str, float]] = {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(self.vocab)
        }
        total = float(support.sum())
        weights = support / max(total, 1.0)
        rows["macro avg"] = {"precision": float(precision.mean()), "recall": float(recall.mean()),
                             "f1": float(f1.mean()), "support": int(total)}
        rows["weighted avg"] = {"precision": float((precision * weights).sum()),
                                "recall": float((recall * weights).sum()),
                                "f1": float((f1 * weights).sum()), "support": int(total)}
        rows["accuracy"] = {"accuracy": self._accuracy(), "support": int(total)}
        return _format_report(rows) if as_text else rows

    def print_classification_report(self) -> None:
        """Print the per-class report (`report(as_text=True)`), as fastai's method of this name.

        Example:
            >>> interp.print_classification_report()  # doctest: +SKIP
        """
        print(self.report(as_text=True))

    def _class_counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per class: true positives, times predicted, times present (support), over labelled items."""
        if isinstance(self.task, MultiLabel):
            labelled = self.task.labelled(self.targets)
            decided, actual = self.preds[labelled].double(), self.targets[labelled].double()
            return (decided * actual).sum(dim=0), decided.sum(dim=0), actual.sum(dim=0)
        matrix = self.confusion_matrix().double()
        return matrix.diagonal(), matrix.sum(dim=0), matrix.sum(dim=1)

    def _accuracy(self) -> float:
        """Single-label: the fraction of items right; multi-label: of (item, class) decisions right."""
        labelled = self.task.labelled(self.targets)
        if not labelled.any():
            return 0.0
        if isinstance(self.task, MultiLabel):
            return float((self.preds[labelled] == self.targets[labelled].bool()).double().mean())
        return float((self.preds[labelled] == self.targets[labelled]).double().mean())

    def _single_label_only(self, what: str) -> None:
        if isinstance(self.task, MultiLabel):
            raise ValueError(f"{what} needs single-label data: each multi-label item may have several classes. "
                             "Use report() for per-class precision, recall and F1.")


def _format_report(rows: dict[str, dict[str, float]]) -> str:
    width = max(12, *(len(name) for name in rows))
    lines = [f"{'':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for name, row in rows.items():
        if name == "accuracy":
            lines.append(f"{name:<{width}} {'':>9} {'':>9} {row['accuracy']:>9.3f} {row['support']:>9}")
        else:
            lines.append(f"{name:<{width}} {row['precision']:>9.3f} {row['recall']:>9.3f} {row['f1']:>9.3f} "
                         f"{row['support']:>9}")
    return "\n".join(lines)


# fastai's base-class name; `Interpretation.from_learner(learn)` builds the same object.
Interpretation = ClassificationInterpretation
