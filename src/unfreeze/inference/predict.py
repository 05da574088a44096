"""Predictions: ordered probabilities over a loader, one image, a stream of images, and TTA.

These are plain functions of a predictor: anything with a `model`, its loaders `dls` (vocab,
`test_dl`), a `task`, a `device`, an `amp_dtype` and a `seed`, such as a `Learner`. Everything runs through
`collect_logits`, the one evaluation pass (eval mode, no grad, ordered, gathered across ranks), so
predictions here equal what the learner's `validate` scores. The task decides what the outputs mean:
softmax and arg-max for single-label data, sigmoid and a threshold for multi-label data.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from unfreeze import distributed
from unfreeze.data import IMAGE_EXTENSIONS, BadFileReport, DataError, ImageDataLoader
from unfreeze.data.sources import is_hidden
from unfreeze.models.batchnorm_folding import folded_batchnorm
from unfreeze.progress import StepProgress
from unfreeze.tasks import Regression, SingleLabel
from unfreeze.trust import FeatureTap, Trust

__all__ = ["Prediction", "Predictor", "channels_last", "collect_logits", "collect_outputs", "get_preds",
           "iter_image_files", "loader_of", "predict", "predict_batch", "prediction_row", "trust_of", "tta"]


class Predictor(Protocol):
    """What the functions here need of a learner: a model, its data and where it runs."""

    model: nn.Module
    dls: Any
    task: Any  # a unfreeze.tasks.Task
    device: torch.device
    seed: int | None

    @property
    def amp_dtype(self) -> torch.dtype | None: ...


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """A batch in the channels_last layout (other tensors unchanged); the training step uses it too."""
    # channels_last (NHWC) is the fast layout for convolutions on GPUs under bf16 and on CPUs (oneDNN).
    return images.contiguous(memory_format=torch.channels_last) if images.ndim == 4 else images


@torch.no_grad()
def collect_logits(model: nn.Module, loader: Any, amp_dtype: torch.dtype | None = None,
                   progress: StepProgress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` over `loader` in eval mode; return float logits and targets, in the loader's order.

    `progress`, when given, is advanced by each batch's items.

    Under torchrun each rank sees a disjoint slice and the results are gathered, so every item counts
    exactly once. The model's train/eval mode is restored afterwards.

    Example:
        >>> logits, targets = collect_logits(learn.model, learn.dls.valid)  # doctest: +SKIP
    """
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    device_type = getattr(getattr(loader, "device", None), "type", "cpu")
    autocast = (torch.autocast(device_type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    try:
        batches = iter(loader)
        first = next(batches, None)
        # The first batch finds the pairs to fold; CPU float32 only (folded_batchnorm checks).
        with folded_batchnorm(model, None if first is None or amp_dtype is not None else channels_last(first[0])):
            for images, labels in itertools.chain([first] if first is not None else [], batches):
                with autocast:
                    outputs.append(model(channels_last(images)).float())
                targets.append(labels)
                if progress is not None:
                    progress.advance(len(labels))
    finally:
        model.train(was_training)
    device = getattr(loader, "device", torch.device("cpu"))
    n_out = getattr(model, "n_out", 0)
    logits = torch.cat(outputs) if outputs else torch.zeros(0, n_out, device=device)
    labels = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long, device=device)
    return distributed.gather_ordered(logits), distributed.gather_ordered(labels)


def trust_of(learner: Any) -> Trust:
    """The learner's `Trust` (temperature and unknown score); a plain one (T = 1, no score) if it has none."""
    trust = getattr(learner, "trust", None)
    return trust if isinstance(trust, Trust) else Trust()


def collect_outputs(learner: Predictor, loader: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`collect_logits` of the learner's model, plus each item's out-of-distribution score (None when the
    learner has no fitted score): the features are read by a hook during the same pass."""
    trust = trust_of(learner)
    if not trust.has_score:
        return (*collect_logits(learner.model, loader, learner.amp_dtype), None)
    tap = FeatureTap(learner.model)
    with tap.open():
        logits, targets = collect_logits(learner.model, loader, learner.amp_dtype)
    features = distributed.gather_ordered(tap.features())
    return logits, targets, trust.scores(features, logits)


def _ordered(loader: Any) -> Any:
    """`loader` itself, or an unshuffled, unaugmented twin of a training loader (same items)."""
    if not getattr(loader, "shuffle", False):
        return loader
    return ImageDataLoader(loader.dataset, loader.batch_size, size=loader.size, seed=loader.seed,
                           device=loader.device, num_workers=loader.num_workers, mean=loader.mean, std=loader.std)


def loader_of(dls: Any, ds_idx: int) -> Any:
    """fastai's `ds_idx`: 1 the validation loader; 0 the training images, in order and with the validation
    transforms (fastai's keep the training augmentation).

    Example:
        >>> probs, targets = get_preds(learn, loader_of(learn.dls, 0))  # doctest: +SKIP
    """
    if ds_idx == 1:
        return dls.valid
    if ds_idx == 0:
        items = dls.train.dataset.items
        return dls.test_dl([file for file, _ in items], labels=[label for _, label in items])
    raise ValueError(f"ds_idx must be 0 (training images) or 1 (validation images), got {ds_idx!r}.")


def get_preds(learner: Predictor, dl: Any = None, with_loss: bool = False, *,
              with_decoded: bool = False, with_ood: bool = False, progress: StepProgress | None = None,
              act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    """Probabilities and targets over `dl` (default: the validation loader), in dataset order.

    Probabilities are the task's activation of the logits divided by the learner's calibrated
    temperature (`learn.trust.temperature`; 1 for an uncalibrated learner): softmax for single-label
    data, a sigmoid per class for multi-label data.

    A shuffled (training) loader is replaced by an unshuffled, unaugmented loader over the same items.
    Items that could not be decoded are left out (their indices are in `dl.dataset.dropped`).

    Args:
        learner: The learner whose model predicts.
        dl: An `ImageDataLoader`, e.g. `learner.dls.test_dl(paths)`.
        with_loss: Also return every item's loss under the learner's `loss_func` (`Task.item_losses`; NaN
            for unlabelled items).
        with_decoded: Also return the task's decoded predictions (fastai's `with_decoded`).
        with_ood: Also return, last, each item's out-of-distribution score (higher = less like the
            training images; None when the learner has no fitted score, see `learn.calibrate()`).
        progress: Advanced by each batch's items (without `with_ood`), e.g. a `StepProgress`.
        act: fastai's `act`: applied to the logits in place of the task's activation and the calibrated
            temperature (`act=lambda logits: logits` returns the logits); `decoded` reads its output.

    Returns:
        `(probs, targets)`, then `decoded` with `with_decoded`, then `losses` with `with_loss` (fastai's
        order), then `ood_scores` with `with_ood`: float [N, C]; long [N] (-1 if unlabelled) or multi-hot
        [N, C]; long [N] class indices or bool [N, C]; float [N]; float [N]; on the CPU.

    Example:
        >>> probs, targets = get_preds(learn)  # doctest: +SKIP
        >>> probs, targets, losses = get_preds(learn, learn.dls.test_dl(paths), with_loss=True)  # doctest: +SKIP
        >>> probs, targets, decoded = get_preds(learn, with_decoded=True)  # doctest: +SKIP
    """
    loader = _ordered(learner.dls.valid if dl is None else dl)
    logits, targets, scores = collect_outputs(learner, loader) if with_ood else (
        *collect_logits(learner.model, loader, learner.amp_dtype, progress), None)
    task = learner.task
    outputs = trust_of(learner).probabilities(logits, task) if act is None else act(logits)
    results = [outputs.cpu(), targets.cpu()]
    if with_decoded:
        results.append(task.decode(results[0]))
    if with_loss:
        # fastai's with_loss: the learner's own loss function (a protocol object without one: the task's)
        results.append(task.item_losses(logits, targets, getattr(learner, "loss_func", None)).cpu())
    if with_ood:
        results.append(scores)
    return tuple(results)


class Prediction(tuple):
    """`predict`'s `(label, decoded, probs)`, unpacked as a plain tuple, with the unknown flag as attributes.

    Attributes:
        unknown: True when the image is unlike the training images (its `ood_score` is above the model's
            threshold); None for a model without a fitted score (an export from before unfreeze 0.2).
        ood_score: The out-of-distribution score (higher = less like the training images), or None.

    Example:
        >>> label, index, probs = prediction = Prediction(("cat", 0, torch.ones(1)), unknown=False, ood_score=0.3)
        >>> label, prediction.unknown
        ('cat', False)
    """

    unknown: bool | None
    ood_score: float | None

    def __new__(cls, fields: Iterable[Any], unknown: bool | None = None, ood_score: float | None = None) -> Prediction:
        prediction = super().__new__(cls, fields)
        prediction.unknown, prediction.ood_score = unknown, ood_score
        return prediction


def predict(learner: Predictor, item: Any) -> Prediction:
    """Predict one image: a path, a PIL image, a numpy HWC array or a CHW/HWC tensor.

    The image goes through the validation transforms (item resize, centre crop, normalization).

    Returns:
        A `Prediction`: `(label, index, probs)`, the predicted class name, its index and the float [C]
        (calibrated) probabilities. For multi-label data: `(labels, mask, probs)`, the tuple of predicted
        class names (maybe empty) and the bool [C] mask of classes at or above the threshold. Its
        `unknown` and `ood_score` attributes say whether the image is unlike the training images.

    Raises:
        DataError: The file does not exist or cannot be decoded as an image.

    Example:
        >>> label, index, probs = predict(learn, "cat.jpg")  # doctest: +SKIP
        >>> label, float(probs[index])  # doctest: +SKIP
        ('cat', 0.97)
    """
    loader = learner.dls.test_dl([item], batch_size=1)
    with warnings.catch_warnings():
        # The failure is raised below with its reason; a warning on top would say it twice.
        warnings.simplefilter("ignore")
        probs, _, scores = get_preds(learner, loader, with_ood=True)
    if len(probs) == 0:
        reason = loader.dataset.dropped.get(0, "unknown error")
        raise DataError(f"{loader.dataset.items[0][0]} could not be decoded ({reason}). Expected an image.")
    task = learner.task
    decoded = task.decode(probs[:1])[0]
    unknown, score = _flag(learner, scores, 0)
    index = int(decoded) if isinstance(task, SingleLabel) else decoded
    return Prediction((task.labels_of(decoded, learner.dls.vocab), index, probs[0]), unknown=unknown, ood_score=score)


def _flag(learner: Predictor, scores: torch.Tensor | None, position: int) -> tuple[bool | None, float | None]:
    """(unknown, ood_score) of one item, or (None, None) without a fitted score."""
    if scores is None:
        return None, None
    score = scores[position : position + 1]
    return bool(trust_of(learner).unknown(score)[0]), float(score[0])


def iter_image_files(folder: str | Path, _visited: set[tuple[int, int]] | None = None) -> Iterator[Path]:
    """Image files under `folder`, recursively, yielded lazily in sorted order (per folder).

    Only one folder's listing is held at a time, so a folder of millions of files costs no memory.
    Symbolic links to folders are followed, but each folder is listed once (by device and inode), so a
    link back up the tree ends instead of looping. A name with an image extension that is no regular file
    (a broken link, a named pipe) is yielded too, so that the caller reports it (predict gives it an error
    row, as training names it among the skipped files); other broken links are skipped. Hidden names
    (._photo.jpg, .ipynb_checkpoints/) are skipped as training skips them.

    Example:
        >>> next(iter_image_files("photos"))  # doctest: +SKIP
        PosixPath('photos/a.jpg')
    """
    visited = set() if _visited is None else _visited
    try:
        info = os.stat(folder)
    except OSError:  # a broken link or a folder removed meanwhile: nothing to list
        return
    if (info.st_dev, info.st_ino) in visited:
        return
    visited.add((info.st_dev, info.st_ino))
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if is_hidden(entry.name):  # a macOS resource fork or a tool's folder: no image of the user's
            continue
        try:
            is_dir = entry.is_dir()  # False for a broken link
        except OSError:  # ELOOP: a link that points at itself
            is_dir = False
        if is_dir:
            yield from iter_image_files(entry.path, visited)
        elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            yield Path(entry.path)


def _sources(items_or_folder: Any) -> Iterable[Any]:
    if isinstance(items_or_folder, (str, Path)):
        path = Path(items_or_folder)
        if path.is_dir():
            return iter_image_files(path)
        if not path.exists():
            raise DataError(f"{path} does not exist. Expected a folder of images or a list of images.")
        return [path]
    return items_or_folder


def _name(source: Any, position: int) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<in-memory image {position}>"


def prediction_row(probs: torch.Tensor, task: Any, vocab: list[str], top_k: int = 1, unknown: bool | None = None,
                   ood_score: float | None = None) -> dict[str, Any]:
    """The prediction fields of one item's probabilities: label, index, prob (and top_k alternatives),
    and the unknown flag with its score (None for a model without a fitted score).

    Single-label: the arg-max class, its index and probability; with `top_k` > 1 also `top_k`, the k
    most probable `[label, prob]` pairs. Multi-label: lists of the classes at or above the threshold,
    their indices and probabilities.

    Example:
        >>> row = prediction_row(torch.tensor([0.1, 0.7, 0.2]), SingleLabel(), ["a", "b", "c"], top_k=2)
        >>> row["label"], row["index"], [label for label, _ in row["top_k"]]
        ('b', 1, ['b', 'c'])
    """
    decoded = task.decode(probs.unsqueeze(0))[0]
    if isinstance(task, Regression):  # numbers: each output by name, and a readable line as the label
        values = dict(zip(vocab, task.labels_of(decoded, vocab), strict=True))
        return {"label": ", ".join(f"{name}={value:.4g}" for name, value in values.items()), "values": values,
                "index": None, "prob": None, "error": None}
    if isinstance(task, SingleLabel):
        index = int(decoded)
        row: dict[str, Any] = {"label": vocab[index], "index": index, "prob": float(probs[index]), "error": None}
    else:
        indices = torch.nonzero(decoded).flatten().tolist()
        row = {"label": [vocab[i] for i in indices], "index": indices, "prob": [float(probs[i]) for i in indices],
               "error": None}
    row["unknown"], row["ood_score"] = unknown, ood_score
    if top_k > 1:
        best = probs.topk(min(top_k, len(vocab)))
        row["top_k"] = [[vocab[i], p] for i, p in zip(best.indices.tolist(), best.values.tolist(), strict=True)]
    return row


def _not_a_file(path: Path) -> str:
    """Why a path given as an image is no regular file: a FIFO named camera.jpg is there, not missing."""
    if path.is_symlink() and not path.exists():
        return "broken symbolic link"
    if not path.exists():
        return "file not found"
    return "a directory, not an image file" if path.is_dir() else "not a regular file (a pipe, socket or device)"


def _predict_chunk(learner: Predictor, chunk: list[Any], start: int, bs: int, top_k: int,
                   augmented: bool = False) -> Iterator[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    present = []
    for offset, source in enumerate(chunk):
        if isinstance(source, (str, Path)) and not Path(source).is_file():
            rows[offset] = {"error": _not_a_file(Path(source))}
        else:
            present.append(offset)
    if present:
        loader = learner.dls.test_dl([chunk[offset] for offset in present], batch_size=bs)
        with warnings.catch_warnings():
            # Bad files are reported in their rows and in one summary warning, not once per chunk.
            warnings.simplefilter("ignore")
            probs, _, scores = get_preds(learner, loader, with_ood=True)
            if augmented:  # the unknown flag is the plain pass's; the probabilities are TTA's
                probs = tta(learner, loader)[0]
        dropped = loader.dataset.dropped
        kept = [position for position in range(len(present)) if position not in dropped]
        for number, (position, item_probs) in enumerate(zip(kept, probs, strict=True)):
            unknown, score = _flag(learner, scores, number)
            rows[present[position]] = prediction_row(item_probs, learner.task, learner.dls.vocab, top_k, unknown, score)
        for position, reason in dropped.items():
            rows[present[position]] = {"error": reason}
    for offset, source in enumerate(chunk):
        row = {"path": _name(source, start + offset), "label": None, "index": -1, "prob": float("nan"), "error": None,
               "unknown": None, "ood_score": None}
        row.update(rows[offset])
        yield row


def predict_batch(learner: Predictor, items_or_folder: Any, bs: int = 64, top_k: int = 1,
                  with_tta: bool = False) -> Iterator[dict[str, Any]]:
    """Stream predictions over a folder (searched recursively) or an iterable of images, `bs` at a time.

    A generator: only one batch of images is decoded and held at a time, and a folder is listed lazily,
    so 100,000 images need one batch's worth of memory. Unreadable or missing files do not stop the
    stream: their row has `label=None`, `index=-1` and the reason in `error`, and one `DataWarning`
    naming them is issued when the stream is exhausted.

    Args:
        learner: The learner whose model predicts.
        items_or_folder: A folder, one image path, or an iterable (list, generator) of paths, PIL images,
            numpy arrays or tensors.
        bs: Images decoded and predicted per batch.
        top_k: Also list the `top_k` most probable classes of each image (`row["top_k"]`).
        with_tta: Average test-time augmentation passes (`tta`) instead of one plain pass.

    Yields:
        One dict per input, in input order: `{"path": str, "label": str | None, "index": int,
        "prob": float (probability of the predicted class), "error": str | None, "unknown": bool | None,
        "ood_score": float | None}` (unknown: unlike the training images, see `Prediction`), plus `top_k`
        with `top_k` > 1. For multi-label data, `label`, `index` and `prob` are lists over the
        predicted classes (see `prediction_row`).

    Example:
        >>> for row in predict_batch(learn, "photos/"):  # doctest: +SKIP
        ...     print(row["path"], row["label"], round(row["prob"], 3))
        >>> rows = list(predict_batch(learn, ["a.jpg", "b.jpg"]))  # doctest: +SKIP
    """
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ValueError(f"bs must be a whole number >= 1, got {bs!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a whole number >= 1, got {top_k!r}.")
    sources = iter(_sources(items_or_folder))
    bad = BadFileReport()
    start = 0
    while chunk := list(itertools.islice(sources, bs)):
        for row in _predict_chunk(learner, chunk, start, bs, top_k, with_tta):
            if row["error"] is not None:
                bad.add(Path(row["path"]), row["error"])
            yield row
        start += len(chunk)
    bad.warn("images that could not be predicted (their rows carry the reason)")


def tta(learner: Predictor, dl: Any = None, n: int = 4, beta: float | None = 0.25,
        use_max: bool = False) -> tuple[torch.Tensor | tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """fastai's test-time augmentation: `(1 - beta) * mean(n augmented passes) + beta * plain pass`.

    The augmented passes apply the training transforms (random crop and the training `BatchAugment`)
    to the items of `dl` in their order. Pass `i` draws from `(seed, i)`, so the result is the same on
    every call with the same learner seed (or data seed when the learner has none).

    Args:
        learner: The learner whose model predicts.
        dl: The loader (default: validation).
        n: Number of augmented passes, >= 1.
        beta: Weight of the plain pass. None returns both parts instead of mixing them.
        use_max: Combine the augmented passes by their element-wise maximum instead of their mean
            (fastai's `use_max`).

    Returns:
        `(probs, targets)`, or `((augmented_probs, plain_probs), targets)` when `beta` is None.

    Example:
        >>> probs, targets = tta(learn)  # doctest: +SKIP
        >>> (augmented, plain), targets = tta(learn, beta=None)  # doctest: +SKIP
        >>> probs, targets = tta(learn, use_max=True)  # doctest: +SKIP
    """
    if not isinstance(use_max, bool):
        raise TypeError(f"use_max must be True or False, got {use_max!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}.")
    if beta is not None and not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1] or None, got {beta!r}.")
    if getattr(learner.task, "points", False):
        raise ValueError("tta averages the predictions of flipped and zoomed images, which moves point targets; "
                         "use learn.get_preds() for a model of points.")
    loader = _ordered(learner.dls.valid if dl is None else dl)
    train = learner.dls.train
    seed = learner.seed if learner.seed is not None else loader.seed
    augmented = ImageDataLoader(loader.dataset, loader.batch_size, training=True, size=loader.size,
                                augment=train.augment, seed=seed, device=loader.device,
                                num_workers=loader.num_workers, mean=loader.mean, std=loader.std)
    augmented.shuffle = False  # augment like training, but keep the items in order
    passes = []
    for index in range(n):
        augmented.set_epoch(index)
        passes.append(get_preds(learner, augmented)[0])
    stacked = torch.stack(passes)
    augmented_probs = stacked.amax(dim=0) if use_max else stacked.mean(dim=0)
    plain_probs, targets = get_preds(learner, loader)
    if beta is None:
        return (augmented_probs, plain_probs), targets
    return torch.lerp(augmented_probs, plain_probs, beta), targets
