"""The everyday names fastai notebooks use without importing them: `Path` with `.ls()`, `tensor`, `to_cpu`,
and the modules `from unfreeze import *` hands out lazily (`pd`, `plt`, `L`, ...).

fastai adds `ls` to `pathlib.Path` by monkey patching; here `Path` is a subclass, so only paths made
through unfreeze's `Path` (and `untar_data`) have it, and no other library sees a changed class.
`LAZY_NAMES` lists what the package's `__getattr__` imports on first use: `import unfreeze` stays as
fast as before, and pandas or pyplot load only for the star import that asks for them.

Example:
    >>> tensor(1, 2, 3)
    tensor([1, 2, 3])
    >>> Path("pets").ls()  # doctest: +SKIP
    [Path('pets/images'), Path('pets/labels.csv')]
"""

from __future__ import annotations

import importlib
import mimetypes
import pathlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: `import unfreeze` must not wait for it
    import torch

__all__ = ["FASTAI_ATTRIBUTES", "LAZY_NAMES", "UNSUPPORTED", "MissingModule", "Path", "Unsupported",
           "fastai_attribute_error", "load_lazy", "tensor", "to_cpu"]

# name -> (module, attribute or None for the module itself, the pip extra that installs it or None)
LAZY_NAMES: dict[str, tuple[str, str | None, str | None]] = {
    "pd": ("pandas", None, "fastai"),
    "np": ("numpy", None, None),
    "os": ("os", None, None),  # the vision tutorial's ColReader(..., pref=str(path/'train') + os.path.sep)
    "torch": ("torch", None, None),
    "nn": ("torch.nn", None, None),
    "F": ("torch.nn.functional", None, None),
    "plt": ("matplotlib.pyplot", None, None),
    "partial": ("functools", "partial", None),
    "L": ("fastcore.foundation", "L", None),
}


class MissingModule(ModuleType):
    """Stands for an optional package that is not installed: any use says how to install it.

    Example:
        >>> pd = MissingModule("pandas", "fastai")
        >>> pd.read_csv("labels.csv")  # doctest: +SKIP
        ModuleNotFoundError: pandas is not installed; install it with pip install 'unfreeze[fastai]'.
    """

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(package)
        self.__install = f"pip install 'unfreeze[{extra}]'"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (help(), copy, pickle) must not raise the install hint
            raise AttributeError(name)
        raise ModuleNotFoundError(f"{self.__name__} is not installed; install it with {self.__install}.")


def load_lazy(name: str) -> Any:
    """Import the object `LAZY_NAMES[name]` names; a missing optional package gives a `MissingModule`.

    Example:
        >>> load_lazy("partial").__name__
        'partial'
    """
    module_name, attribute, extra = LAZY_NAMES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if extra is None:
            raise
        return MissingModule(module_name.split(".")[0], extra)
    return module if attribute is None else getattr(module, attribute)


class Path(type(pathlib.Path())):  # type: ignore[misc]  # PosixPath or WindowsPath, as pathlib.Path() picks
    """`pathlib.Path` with fastai's `ls()`; `path / "images"` is a `Path` too.

    Example:
        >>> (Path("pets") / "images").name
        'images'
    """

    def ls(self, n_max: int | None = None, file_type: str | None = None,
           file_exts: str | list[str] | None = None) -> Any:
        """The folder's entries, sorted by name, as fastcore's `L` (fastai's `path.ls()`).

        Args:
            n_max: At most this many entries.
            file_type: Only files of this MIME type family, e.g. "image".
            file_exts: Only these suffixes, e.g. ".jpg" or [".jpg", ".png"].

        Example:
            >>> Path("pets").ls(file_exts=".csv")  # doctest: +SKIP
            [Path('pets/labels.csv')]
        """
        exts = [file_exts] if isinstance(file_exts, str) else list(file_exts or [])
        if file_type is not None:
            exts += [ext for ext, kind in mimetypes.types_map.items() if kind.startswith(file_type + "/")]
        entries = sorted(entry for entry in self.iterdir() if not exts or entry.suffix.lower() in exts)
        return load_lazy("L")(entries[:n_max] if n_max is not None else entries)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"  # as fastai prints paths


def tensor(x: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """fastai's `tensor`: a tensor from numbers, lists, arrays or tensors; float64 becomes float32.

    Example:
        >>> tensor([1.0, 2.0]).dtype, tensor(1, 2).tolist()
        (torch.float32, [1, 2])
    """
    import torch

    values = (x, *rest) if rest else x
    if isinstance(values, torch.Tensor):
        result = values
    elif isinstance(values, (list, tuple)) and values and all(isinstance(v, torch.Tensor) for v in values):
        result = torch.stack(list(values))
    elif hasattr(values, "to_numpy"):  # a pandas Series or DataFrame: copied, its array may be read-only
        result = torch.tensor(values.to_numpy(), **kwargs)
    else:  # numbers, (nested) lists, numpy arrays
        result = torch.as_tensor(values, **kwargs)
    return result.float() if result.dtype == torch.float64 else result


def to_cpu(batch: Any) -> Any:
    """Every tensor in `batch` (a tensor, or tuples, lists and dicts of them) moved to the CPU.

    Example:
        >>> import torch
        >>> x, y = to_cpu((torch.zeros(2), torch.ones(2)))
        >>> x.device.type
        'cpu'
    """
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.cpu()
    if isinstance(batch, Mapping):
        return type(batch)({key: to_cpu(value) for key, value in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, (list, tuple)):
        moved = [to_cpu(value) for value in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


# ---------------------------------------------------------------------------- helpful misses
# fastai names that unfreeze does not copy, each with what to use instead. `from unfreeze import *` hands them
# out as `Unsupported` stand-ins, so a notebook cell that uses one fails with this one line, not a NameError.
_NOT_VISION = "unfreeze trains image classifiers and image regressors only"
UNSUPPORTED: dict[str, str] = {
    **{name: f"{_NOT_VISION}; segmentation and object detection are not supported" for name in (
        "unet_learner", "SegmentationDataLoaders", "MaskBlock", "BBoxBlock", "BBoxLblBlock",
        "SegmentationInterpretation")},
    **{name: f"{_NOT_VISION}; text models are not supported" for name in (
        "TextDataLoaders", "TextBlock", "text_classifier_learner", "language_model_learner", "AWD_LSTM")},
    **{name: f"{_NOT_VISION}; tabular and collaborative-filtering models are not supported" for name in (
        "TabularDataLoaders", "TabularPandas", "tabular_learner", "collab_learner", "CollabDataLoaders")},
    **{name: "unfreeze's optimizers are opt_func=Adam, SGD or ranger (optimizer='adamw', 'sgd' or 'ranger')"
       for name in ("RAdam", "QHAdam", "Lamb", "Larc", "Lookahead", "RMSProp", "OptimWrapper")},
    **{name: "batch augmentation is aug_transforms(...) (flips, rotation, zoom, lighting) in batch_tfms=" for name in (
        "Flip", "Rotate", "Zoom", "Brightness", "Contrast", "Warp", "Dihedral", "CropPad", "RandomErasing",
        "setup_aug_tfms")},
    **{name: "callbacks stop a fit by returning True from after_batch / after_epoch or setting "
             "self.stop_training = True" for name in (
        "CancelFitException", "CancelEpochException", "CancelBatchException", "CancelTrainException",
        "CancelValidException")},
    **{name: "use torch's module.register_forward_hook; unfreeze has no hook callbacks" for name in (
        "Hook", "Hooks", "hook_outputs", "HookCallback", "ActivationStats")},
    **{name: "unfreeze does not download images; save them as path/<class>/<image>.jpg yourself, then "
             "get_image_files(path) and verify_images(...) find them" for name in (
        "search_images_ddg", "search_images_bing", "download_images", "download_url")},
    "ImageClassifierCleaner": "review the images by loss with `unfreeze clean RUN_DIR` (a page that relabels and "
                              "removes files), or in a notebook with interp.plot_top_losses(k)",
    "WandbCallback": "log with TensorBoardLogger or MLflowLogger (cbs=...)",
    "ReduceLROnPlateau": "use fit_one_cycle or fit_flat_cos, and EarlyStoppingCallback to stop early",
    "MixedPrecision": "mixed precision is on by default on CUDA; learn.to_fp16() / to_fp32() switch it",
    "BCEWithLogitsLossFlat": "multi-label data gets binary cross-entropy with logits by itself; leave loss_func out",
    "FocalLossFlat": "the losses are the task's own, CrossEntropyLossFlat, LabelSmoothingCrossEntropy, MSELossFlat "
                     "and L1LossFlat",
    "LabelSmoothingCrossEntropyFlat": "use LabelSmoothingCrossEntropy() (or Recipe(label_smoothing=0.1))",
    **{name: "split with RandomSplitter(valid_pct, seed), GrandparentSplitter(), ColSplitter(col), FuncSplitter(f) "
             "or IndexSplitter(valid_indices) (e.g. the last items: IndexSplitter(range(n - n // 5, n)))" for name in (
        "TrainTestSplitter", "EndSplitter", "MaskSplitter", "FileSplitter")},
    "DataLoaders": "use ImageDataLoaders (from_folder, from_csv, ...) or DataBlock(...).dataloaders(source)",
    "create_body": "create_model(arch, n_out) builds the body and head (model.body, model.head)",
    "create_head": "create_model(arch, n_out, head='fastai' | 'linear' | module) builds the head",
    "to_np": "call .numpy() on the (CPU) tensor: to_cpu(x).numpy()",
    "to_detach": "call .detach() (and to_cpu) on the tensors",
    "distrib_ctx": "launch the script with torchrun: the learner uses DDP by itself",
}

# fastai attributes of unfreeze's objects that have another spelling here (owner class name -> name -> hint).
FASTAI_ATTRIBUTES: dict[str, dict[str, str]] = {
    "Learner": {
        "opt": "learn.optimizer (None until the first step builds it)",
        "create_opt": "learn.ensure_optimizer()",
        "cbs": "learn.callbacks (and cbs= of each fit)",
        "add_cb": "pass the callback to Learner(cbs=...) or to a fit's cbs=",
        "add_cbs": "pass the callbacks to Learner(cbs=...) or to a fit's cbs=",
        "remove_cb": "leave it out of the next fit's cbs= (learn.callbacks lists the learner's own)",
        "added_cbs": "pass the callbacks to the fit's cbs=: they apply to that fit only",
        "no_logging": "learn.no_bar() or Learner(quiet=True)",
        "no_mbar": "learn.no_bar() or Learner(quiet=True)",
        "lr": "the LR is an argument of each fit; learn.recorder.lrs holds what ran",
        "to_distributed": "launch the script with torchrun: the learner uses DDP by itself",
        "to_parallel": "launch the script with torchrun: the learner uses DDP by itself",
        "distrib_ctx": "launch the script with torchrun: the learner uses DDP by itself",
        "show_training_loop": "the loop is unfreeze.train.loop.run_fit; its events are listed in "
                              "unfreeze.train.callbacks",
        "xb": "callbacks get (step, logs): the batch is not kept on the learner",
        "yb": "callbacks get (step, logs): the batch is not kept on the learner",
        "pred": "callbacks get (step, logs): the batch is not kept on the learner",
        "loss": "callbacks get (step, logs): the loss is logs['loss']",
        "smooth_loss": "learn.recorder.smooth_losses[-1]",
        "set_seed": "set_seed(s) (a function), or Learner(seed=...) / vision_learner(seed=...)",
    },
    "Recorder": {
        "final_record": "recorder.history[-1] (a dict by name) or recorder.values[-1]",
        "log": "recorder.history[-1] (a dict by name)",
        "iters": "recorder.phase_starts and len(recorder.losses)",
        "hps": "recorder.lrs and recorder.moms",
        "train_metrics": "recorder.history (train_loss per epoch); unfreeze scores metrics on validation only",
    },
    "ImageDataLoaders": {
        "cuda": "dls.to('cuda')",
        "cpu": "dls.to('cpu')",
        "loaders": "dls.train and dls.valid",
        "dataset": "dls.train_ds and dls.valid_ds",
        "after_batch": "batch_tfms= when building the loaders",
        "after_item": "item_tfms= when building the loaders",
        "new": "build new loaders with the factory (bs=, size=, item_tfms=, ...)",
        "show_results": "learn.show_results()",
    },
}


class Unsupported:
    """A fastai name unfreeze does not copy: using it (calling it, reading an attribute) raises one line
    that says so and what to use instead.

    Example:
        >>> unet_learner = Unsupported("unet_learner", UNSUPPORTED["unet_learner"])
        >>> unet_learner(None)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        NotImplementedError: fastai's unet_learner is not in unfreeze: ...
    """

    def __init__(self, name: str, hint: str) -> None:
        self.__name__, self._hint = name, hint

    def _fail(self) -> NotImplementedError:
        return NotImplementedError(f"fastai's {self.__name__} is not in unfreeze: {self._hint}.")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._fail()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._fail()

    def __repr__(self) -> str:
        return f"<fastai's {self.__name__}: not in unfreeze>"


def fastai_attribute_error(owner: object, name: str) -> AttributeError:
    """The AttributeError for `owner.<name>`: with unfreeze's spelling when `name` is a fastai attribute.

    Example:
        >>> str(fastai_attribute_error(object(), "x"))
        "'object' object has no attribute 'x'"
    """
    kind = type(owner).__name__
    hint = next((table[name] for cls in type(owner).__mro__ if (table := FASTAI_ATTRIBUTES.get(cls.__name__))
                 and name in table), None)
    if hint is None:
        return AttributeError(f"{kind!r} object has no attribute {name!r}")
    return AttributeError(f"{kind}.{name} is fastai's; unfreeze spells it {hint}.")
