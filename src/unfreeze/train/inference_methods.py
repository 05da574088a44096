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
from unfreeze.train.fastai_idioms import (
    export_target,
    fastai_prediction,
    fastai_prediction_with_input,
    fastai_preds_layout,
    pickle_note,
)

__all__ = ["Exportable", "InferenceMethods"]


class Exportable(Predictor, Protocol):
    """A predictor with the folder that fastai's `export(fname=...)` writes into."""

    path: Path


class InferenceMethods:
    """`get_preds`, `predict`, `predict_batch`, `tta`, `show_results`, `export` and `export_onnx` of a learner."""

    def get_preds(self: Predictor, ds_idx: int = 1, dl: Any = None, with_loss: bool = False, *,
                  with_decoded: bool = False, with_ood: bool = False, with_input: bool = False,
                  act: Callable[[torch.Tensor], torch.Tensor] | None = None, reorder: bool = True,
                  with_preds: bool = True, with_targs: bool = True) -> Any:
        """Probabilities (the task's activation, calibrated) and targets over `dl` (default: validation), in order.

        Returns `(probs, targets)`, then the decoded predictions with `with_decoded`, the item losses
        with `with_loss` (fastai's order) and the unknown scores with `with_ood`; fastai's `with_input`
        puts the images as the model saw them (normalised, on the CPU) first. See
        `unfreeze.inference.get_preds`, also for fastai's `act` (applied in place of the activation).
        fastai's `ds_idx=0` scores the training images, in order and without augmentation (fastai's keep it).
        fastai's `with_preds=False` / `with_targs=False` put None in their place (and leave out the decoded
        predictions with the probabilities). `reorder` is fastai's switch back to item order: the results
        are always in item order here, as fastai's are for the unshuffled loaders get_preds scores.

        Example:
            >>> probs, targets = learn.get_preds()  # doctest: +SKIP
            >>> _, targets = learn.get_preds(with_preds=False)  # doctest: +SKIP
        """
        if dl is None and not isinstance(ds_idx, int):  # get_preds(loader), as before ds_idx came first
            ds_idx, dl = 1, ds_idx
        if dl is None:
            dl = loader_of(self.dls, ds_idx)
        results = fastai_preds_layout(inference.get_preds(self, dl=dl, with_decoded=with_decoded,
                                                          with_loss=with_loss, with_ood=with_ood, act=act),
                                      with_preds, with_targs, with_decoded)
        if not with_input:
            return results
        # A second pass over the same ordered batches: the predictions need not hold every image.
        return (torch.cat([images.cpu() for images, _ in _ordered(dl)]), *results)

    def predict(self: Predictor, item: Any, with_input: bool = False) -> Any:
        """Predict one image (path, PIL image, numpy array or tensor): `(label, decoded, probs)`.

        For multi-label data the first element is a list-like `MultiCategory` of the predicted names
        and `decoded` the bool mask over the classes, as fastai's. fastai's `with_input=True` puts the
        image as the model saw it first: resized and cropped, not normalized, int64 [3, H, W] pixels 0-255.

        Example:
            >>> label, index, probs = learn.predict("cat.jpg")  # doctest: +SKIP
            >>> labels, mask, probs = multi_label_learn.predict("street.jpg")  # doctest: +SKIP
            >>> image, label, index, probs = learn.predict("cat.jpg", with_input=True)  # doctest: +SKIP
        """
        prediction = fastai_prediction(inference.predict(self, item), self.task, item)
        if not with_input:
            return prediction
        seen = self.dls.test_dl([item], batch_size=1).preview(1)[0][0]  # validation transforms, 0..1
        return fastai_prediction_with_input(prediction, (seen * 255).round().long())

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
