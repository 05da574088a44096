"""fastai's `learn.show_results`: validation images titled with their actual and predicted labels.

The first `max_n` validation items are predicted through the validation transforms (as `predict`
sees them) and drawn with `plots.plot_image_grid`: inline in a notebook, else saved to results.png
with its path printed, as every other plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unfreeze.inference.predict import Predictor, get_preds

__all__ = ["result_title", "show_results"]


def result_title(actual: Any, predicted: Any) -> str:
    """The caption of one image: "actual/predicted"; multi-label names are joined by ";".

    Example:
        >>> result_title("cat", "dog")
        'cat/dog'
        >>> result_title(("car", "person"), ())
        'car;person/(none)'
    """

    def names(label: Any) -> str:
        if isinstance(label, str):
            return label or "(none)"
        return ";".join(f"{name:.3g}" if isinstance(name, float) else str(name) for name in label) or "(none)"

    return f"{names(actual)}/{names(predicted)}"


def show_results(learner: Predictor, max_n: int = 9, *, path: str | Path | None = None, nrows: int | None = None,
                 ncols: int | None = None, figsize: tuple[float, float] | None = None, ds_idx: int = 1) -> Any:
    """Up to `max_n` validation images, each titled "actual/predicted" (fastai's `show_results`); for
    point targets the predicted points are marked on the images instead.

    Args:
        learner: The model and its data.
        max_n: How many validation images, from the first.
        path: Where to save the grid; None shows it inline in a notebook, else saves results.png and
            prints where.
        nrows, ncols, figsize: Shape the grid as in `show_batch`.
        ds_idx: 1 (default) the validation images, 0 the training images (fastai's numbering).

    Returns:
        The figure (notebook) or the saved path.

    Raises:
        ValueError: `max_n` is not a whole number >= 1, or there are no validation images.

    Example:
        >>> show_results(learn, max_n=6, path="results.png")  # doctest: +SKIP
        PosixPath('results.png')
    """
    from unfreeze.plots import plot_image_grid  # matplotlib loads only when a figure is drawn

    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be a whole number >= 1, got {max_n!r}.")
    if ds_idx not in (0, 1):
        raise ValueError(f"ds_idx must be 0 (training images) or 1 (validation images), got {ds_idx!r}.")
    valid = learner.dls.valid if ds_idx == 1 else learner.dls.train
    items = valid.dataset.items[:max_n]
    if not items:
        raise ValueError("show_results needs validation images; the validation set is empty.")
    probs, _ = get_preds(learner, learner.dls.test_dl([source for source, _ in items]))
    vocab, task = learner.dls.vocab, learner.task
    predicted = [task.labels_of(decoded, vocab) for decoded in task.decode(probs)]
    titles = [result_title(actual, guess) for (_, actual), guess in zip(items, predicted, strict=True)]
    pictures = [image.permute(1, 2, 0).numpy() for image in valid.decode_uint8(range(len(items)))]
    points = None
    if getattr(task, "points", False):  # marked on the (squished, square) images the model saw
        side = valid.dataset.item_size
        points = [(probs[index].reshape(-1, 2).float().numpy() + 1.0) * side / 2.0 for index in range(len(items))]
        titles = [""] * len(titles)
    return plot_image_grid(pictures, titles, path, nrows=nrows, ncols=ncols, figsize=figsize,
                           default_name="results.png", points=points)
