"""The inference methods of a learner: forwarders to `unfreeze.inference`, mixed into `Learner`.

The work lives in `unfreeze.inference` as plain functions of a model and its data, typed against its
`Predictor` protocol; these methods only forward, so that `learn.predict(...)` reads as in fastai.
Every rank calls export (it synchronises the ranks); only the main process writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from unfreeze import distributed, inference
from unfreeze.inference import Predictor
from unfreeze.inference.predict import _ordered, loader_of
from unfreeze.train.fastai_idioms import export_target, fastai_prediction, pickle_note

__all__ = ["Exportable", "InferenceMethods"]


class Exportable(Predictor, Protocol):
    """A predictor with the folder that fastai's `export(fname=...)` writes into."""

    path: Path


class InferenceMethods:
    """`get_preds`, `predict`, `predict_batch`, `tta`, `show_results`, `export` and `export_onnx` of a learner."""

    def get_preds(self: Predictor, ds_idx: int = 1, dl: Any = None, with_loss: bool = False, *,
                  with_decoded: bool = False, with_ood: bool = False, with_input: bool = False,
                  act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Any:
        """Probabilities (the task's activation, calibrated) and targets over `dl` (default: validation), in order.

        Returns `(probs, targets)`, then the decoded predictions with `with_decoded`, the item losses
        with `with_loss` (fastai's order) and the unknown scores with `with_ood`; fastai's `with_input`
        puts the images as the model saw them (normalised, on the CPU) first. See
        `unfreeze.inference.get_preds`, also for fastai's `act` (applied in place of the activation).
        fastai's `ds_idx=0` scores the training images, in order and without augmentation (fastai's keep it).

        Example:
            >>> probs, targets = learn.get_preds()  # doctest: +SKIP
        """
        if dl is None and not isinstance(ds_idx, int):  # get_preds(loader), as before ds_idx came first
            ds_idx, dl = 1, ds_idx
        if dl is None:
            dl = loader_of(self.dls, ds_idx)
        results = inference.get_preds(self, dl=dl, with_decoded=with_decoded, with_loss=with_loss,
                                      with_ood=with_ood, act=act)
        if not with_input:
            return results
        # A second pass over the same ordered batches: the predictions need not hold every image.
        return (torch.cat([images.cpu() for images, _ in _ordered(dl)]), *results)

    def predict(self: Predictor, item: Any) -> Any:
        """Predict one image (path, PIL image, numpy array or tensor): `(label, decoded, probs)`.

        For multi-label data the first element is a list-like `MultiCategory` of the predicted names
        and `decoded` the bool mask over the classes, as fastai's.

        Example:
            >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
            >>> labels, mask, probs = multi_label_learn.predict("street.jpg")  # doctest: +SKIP
        """
        return fastai_prediction(inference.predict(self, item), self.task, item)

    def predict_batch(self: Predictor, items: Any, bs: int = 64, top_k: int = 1, with_tta: bool = False) -> Any:
        """Stream predictions over many images or a folder, in constant memory (`inference.predict_batch`).

        Example:
            >>> rows = learn.predict_batch("photos/", top_k=3)  # doctest: +SKIP
        """
        return inference.predict_batch(self, items, bs=bs, top_k=top_k, with_tta=with_tta)

    def tta(self: Predictor, dl: Any = None, n: int = 4, beta: float | None = 0.25, use_max: bool = False, *,
            ds_idx: int = 1) -> Any:
        """Test-time augmentation with fastai's defaults: `(probs, targets)`.

        `use_max=True` takes the augmented passes' maximum instead of their mean, as fastai's. Without
        `dl`, fastai's `ds_idx` picks the images as in `get_preds` (also as the first argument:
        `learn.tta(0)` augments the training images, in order).

        Example:
            >>> probs, targets = learn.tta()  # doctest: +SKIP
            >>> probs, targets = learn.tta(use_max=True)  # doctest: +SKIP
        """
        if isinstance(dl, int) and not isinstance(dl, bool):  # fastai's signature starts with ds_idx
            ds_idx, dl = dl, None
        if dl is None:
            dl = loader_of(self.dls, ds_idx)
        return inference.tta(self, dl=dl, n=n, beta=beta, use_max=use_max)

    def show_results(self: Predictor, max_n: int = 9, *, path: str | Path | None = None, nrows: int | None = None,
                     ncols: int | None = None, figsize: tuple[float, float] | None = None, ds_idx: int = 1) -> Any:
        """Up to `max_n` validation images titled "actual/predicted", as fastai's `show_results`.

        Inline in a notebook; in a script saved to results.png (or `path`) with its path printed.
        See `unfreeze.inference.show_results`.

        Example:
            >>> learn.show_results(max_n=9)  # doctest: +SKIP
        """
        return inference.show_results(self, max_n, path=path, nrows=nrows, ncols=ncols, figsize=figsize,
                                      ds_idx=ds_idx)

    def export(self: Exportable, path: str | Path | None = None, *, fname: str | Path | None = None) -> Path:
        """Write a pickle-free export (safetensors + JSON) that `load_learner` reads; returns the path.

        Args:
            path: Where to write it, as given.
            fname: fastai's spelling: a name under `learn.path` (see `fastai_idioms.export_target`:
                with neither, `learn.path/export.unfreeze`; a .pkl name is written as .unfreeze).

        Example:
            >>> learn.export("model.unfreeze")  # doctest: +SKIP
        """
        target = export_target(self.path, path, fname)
        if distributed.is_main_process():
            inference.export(self, target)
            note = pickle_note(path, fname, target)  # said once the file exists: an export can be refused
            if note is not None:
                print(note)
        distributed.barrier()
        return target

    def export_onnx(self: Predictor, path: str | Path = "model.onnx", **options: Any) -> Path:
        """Export the inference model, normalization included, to ONNX (needs `unfreeze[onnx]`).

        Example:
            >>> learn.export_onnx("model.onnx")  # doctest: +SKIP
        """
        if distributed.is_main_process():
            inference.export_onnx(self, path, **options)
        distributed.barrier()
        return Path(path)
