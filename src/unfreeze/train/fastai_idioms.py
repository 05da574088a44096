"""fastai's spellings of the training side, translated here and nowhere else.

The core speaks one vocabulary (`callbacks=`, `weight_decay=`, `loader=`, `path=`, `device=`); fastai's
notebooks speak another (`cbs=`, `wd=`, `dl=`, `fname=`/".pkl", `cpu=`, `suggest_funcs=`,
`show_plot=`). Each public signature may keep the fastai keyword visible for notebooks, and resolves
it in one line at its top with a resolver from this module, the way `unfreeze.data.spellings`
resolves fastai's transforms. Also here:

- `FastaiMethods`, the fastai-named methods (`save`, `load`, `model_file`, `to_fp16`, `to_fp32`,
  `summary`), mixed into `Learner` and typed against the `LearnerView` protocol;
- fastai's callbacks (`SaveModelCallback`, `EarlyStoppingCallback`, `MixUp`, `CutMix`), thin spellings
  of unfreeze's own;
- `Learner(dls, any nn.Module)` as one group (`plain_module_groups`), `MultiCategory` from `predict`;
- save/load by name under `learn.path/model_dir` (`save_named`, `load_named`, `model_file`).

Adding a fastai name: put its resolver or
class in the section below that matches, and resolve it in one line where the public signature
takes it; the core modules never see the fastai spelling.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from torch import nn

from unfreeze import distributed
from unfreeze._device import default_device
from unfreeze._io import atomic_path, save_torch
from unfreeze.data.regression import source_size, unscale_points
from unfreeze.fastai_names import fastai_attribute_error
from unfreeze.inference.predict import Prediction
from unfreeze.tasks import Regression
from unfreeze.train.callbacks import Callback, EarlyStopping, SaveBestModel, callback_list
from unfreeze.train.mixup import MixupCutmix

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView, StepperView

__all__ = ["ONE_GROUP_NOTE", "CutMix", "EarlyStoppingCallback", "FastaiMethods", "MixUp", "MultiCategory",
           "SaveModelCallback", "callbacks_and_cbs", "export_file", "export_target", "fastai_head_choice",
           "fastai_prediction", "fastai_prediction_with_input", "fastai_preds_layout", "learner_device",
           "load_named", "loader_or_dl", "lr_find_answer", "model_file", "moms_or_default", "one_of", "pickle_note",
           "plain_module_groups", "refuse_fine_tune_options", "reset_optimizer_if", "save_named",
           "show_lr_find_inline", "weight_decay_or_wd"]


# ---------------------------------------------------------------------------- argument aliases


def one_of(value: Any, alias: Any, name: str, alias_name: str, default: Any) -> Any:
    """unfreeze's argument or fastai's spelling of it (not both, unless equal), else the default.

    Example:
        >>> one_of(None, 0.1, "weight_decay", "wd", default=0.01)
        0.1
    """
    if value is not None and alias is not None and value != alias:
        raise ValueError(f"{name}={value!r} and {alias_name}={alias!r} name the same setting; pass only one "
                         f"({alias_name} is fastai's spelling of {name}).")
    return value if value is not None else alias if alias is not None else default


def weight_decay_or_wd(weight_decay: float | None, wd: float | None) -> float:
    """A learner's weight decay from `weight_decay=` or fastai's `wd=` (default 0.01).

    Example:
        >>> weight_decay_or_wd(None, None)
        0.01
    """
    return float(one_of(weight_decay, wd, "weight_decay", "wd", default=0.01))


def loader_or_dl(loader: Any, dl: Any, default: Any) -> Any:
    """The loader to score from `loader=` or fastai's `dl=`, else `default` (the validation set)."""
    return one_of(loader, dl, "loader", "dl", default=default)


def callbacks_and_cbs(callbacks: Any, cbs: Any) -> list[Callback]:
    """A fit's own callbacks: unfreeze's `callbacks=`, then fastai's `cbs=` (each one or a sequence).

    Example:
        >>> callbacks_and_cbs((), None)
        []
    """
    return [*callback_list(callbacks, "callbacks"), *callback_list(cbs, "cbs")]


def export_target(folder: Path, path: str | Path | None, fname: str | Path | None) -> Path:
    """Where `Learner.export` writes: `path` as given, or fastai's `fname` under the learner's `folder`.

    With neither, `folder/export.unfreeze` (where fastai writes export.pkl). A name ending in .pkl
    (either argument) is fastai code: it is taken relative to `folder` and written as
    `<stem>.unfreeze` (unfreeze never writes pickles); `pickle_note` says where, once it is written.

    Example:
        >>> export_target(Path("data"), None, None)
        PosixPath('data/export.unfreeze')
    """
    if path is not None and fname is not None:
        raise ValueError(f"Pass path= or fname= (fastai's spelling), not both; got {path!r} and {fname!r}.")
    name = path if path is not None else fname
    target = Path(name) if path is not None else folder / (name if name is not None else "export.unfreeze")
    if target.suffix == ".pkl":
        target = (target if path is None else folder / target).with_suffix(".unfreeze")
    return target


def pickle_note(path: str | Path | None, fname: str | Path | None, target: Path) -> str | None:
    """The line `Learner.export` prints once it has written `target` for a fastai .pkl name; None otherwise.

    Example:
        >>> pickle_note(None, "export.pkl", Path("data/export.unfreeze"))[:40]
        'unfreeze writes no pickles: exported to '
    """
    name = path if path is not None else fname
    if name is None or Path(name).suffix != ".pkl":
        return None
    return (f"unfreeze writes no pickles: exported to {target} (safetensors) instead of {name}; "
            f"load_learner({str(Path(str(name)).with_suffix('.unfreeze'))!r}) or the .pkl name reads it.")


def fastai_head_choice(
    head: str | nn.Module | None, custom_head: nn.Module | None, ps: Any, lin_ftrs: Sequence[int] | None,
    concat_pool: bool,
) -> tuple[str | nn.Module | None, int | list[int]]:
    """`vision_learner`'s head and hidden widths from fastai's `custom_head=`, `ps=` and `lin_ftrs=`.

    `custom_head` is unfreeze's `head=<module>`; `lin_ftrs` the fastai head's hidden widths (default 512).
    A per-layer list of `ps`, or head options next to a custom head (fastai ignores them there), is refused
    rather than silently dropped.

    Example:
        >>> fastai_head_choice(None, None, 0.25, [64], True)
        (None, [64])
    """
    if isinstance(ps, (list, tuple)):
        raise ValueError(f"ps={list(ps)!r}: unfreeze's fastai head takes one dropout, ps, for its last layer and "
                         "ps / 2 for the ones before (fastai's default spacing); pass a single number, e.g. "
                         f"ps={ps[-1]!r}.")
    if custom_head is not None:
        if head is not None:
            raise ValueError("custom_head= (fastai's spelling) and head= both name the head; pass only one.")
        if lin_ftrs is not None or ps != 0.5 or not concat_pool:
            raise ValueError("ps=, lin_ftrs= and concat_pool= shape the fastai head, which custom_head= replaces; "
                             "leave them out, or build them into your custom head.")
        return custom_head, 512
    return head, 512 if lin_ftrs is None else list(lin_ftrs)


def moms_or_default(moms: tuple[float, float, float] | None) -> tuple[float, float, float]:
    """fastai's `moms=None` (the learner's, which are always fastai's default here) or the three given.

    Example:
        >>> moms_or_default(None)
        (0.95, 0.85, 0.95)
    """
    return (0.95, 0.85, 0.95) if moms is None else moms


def reset_optimizer_if(stepper: StepperView, reset_opt: bool) -> None:
    """fastai's `fit(..., reset_opt=True)`: the fit starts from a new optimizer, without Adam's moments."""
    if reset_opt:
        stepper.reset_optimizer()


def refuse_fine_tune_options(lr_max: Any, start_epoch: Any) -> None:
    """fastai's `fine_tune(lr_max=...)` (a TypeError in fastai too: both phases set lr_max) and `start_epoch=`.

    Example:
        >>> refuse_fine_tune_options(None, 0)
    """
    if lr_max is not None:
        raise ValueError(f"fine_tune sets each phase's lr_max itself from base_lr (fastai's fine_tune fails on "
                         f"lr_max= too); pass base_lr={lr_max!r} for the head's LR, or call fit_one_cycle.")
    if start_epoch != 0:
        raise ValueError(f"fine_tune(start_epoch={start_epoch!r}) would skip epochs of both phases; continue an "
                         "interrupted fine_tune with checkpoint= and resume= (the phase and epoch it stopped in).")


def learner_device(device: str | torch.device | None, cpu: bool | None) -> str | torch.device:
    """`load_learner`'s device from `device=` or fastai's `cpu=` (True: the CPU; False: the best one).

    Example:
        >>> learner_device(None, None)
        'cpu'
    """
    if device is not None and cpu is not None and (torch.device(device).type == "cpu") != cpu:
        raise ValueError(f"device={device!r} and cpu={cpu!r} disagree; pass one of them "
                         "(cpu= is fastai's spelling).")
    if device is None:
        return default_device() if cpu is False else "cpu"
    return device


def export_file(path: str | Path) -> Path:
    """fastai's "export.pkl" name read as the `<stem>.unfreeze` that `learn.export()` wrote next to it."""
    path = Path(path)
    if path.suffix == ".pkl" and not path.exists() and path.with_suffix(".unfreeze").is_file():
        return path.with_suffix(".unfreeze")
    return path


def lr_find_answer(result: Any, suggest_funcs: Sequence[Any] | None) -> Any:
    """The range test's `LRFindResult`, or with fastai's `suggest_funcs` its `SuggestedLRs` tuple."""
    return result if suggest_funcs is None else result.suggest(*suggest_funcs)


def show_lr_find_inline(result: Any, plot: str | Path | None, show_plot: bool) -> None:
    """In a notebook, draw the range test inline unless it went to a file or fastai's `show_plot=False`."""
    if plot is None and show_plot and distributed.is_main_process() and in_notebook():
        from unfreeze.plots import plot_lr_find

        plot_lr_find(result)


def in_notebook() -> bool:
    """Whether this process is a notebook kernel (checked without importing IPython or matplotlib)."""
    if "IPython" not in sys.modules:
        return False
    from unfreeze.plots import in_notebook as kernel_running

    return kernel_running()


_NOTES_SHOWN: set[str] = set()


def note_once(note: str) -> None:
    """Print a note the first time it comes up in this process (main process only)."""
    if note not in _NOTES_SHOWN and distributed.is_main_process():
        _NOTES_SHOWN.add(note)
        print(note)


# ---------------------------------------------------------------------------- Learner(dls, any nn.Module)

ONE_GROUP_NOTE = ("freeze: this model is a plain nn.Module, trained as one parameter group (fastai's plain "
                  "Learner), so there is nothing to freeze; every layer trains. For a frozen pretrained body "
                  "use vision_learner(dls, arch).")


def plain_module_groups(model: nn.Module) -> list[list[str]] | None:
    """fastai's `Learner(dls, module)`: a model without the backbone contract's groups is one group.

    Returns None for a model that has `param_groups` (it keeps its own). Like fastai's plain Learner,
    the one group trains every layer; `freeze()` has nothing to freeze and says so
    (`ONE_GROUP_NOTE`), and the data is normalised only as its `batch_tfms` say.

    Example:
        >>> plain_module_groups(nn.Linear(2, 3))
        [['weight', 'bias']]
    """
    if hasattr(model, "param_groups"):
        return None
    return [[name for name, _ in model.named_parameters()]]


class MultiCategory(list):  # type: ignore[type-arg]
    """fastai's multi-label prediction: a list of class names that also equals the tuple unfreeze uses.

    Example:
        >>> labels = MultiCategory(["cat", "dog"])
        >>> labels, labels == ("cat", "dog"), labels == ["cat", "dog"]
        (MultiCategory(['cat', 'dog']), True, True)
    """

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple)) else NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]  # a list: unhashable, as fastai's L

    def __repr__(self) -> str:
        return f"MultiCategory({list(self)!r})"


def fastai_prediction(prediction: tuple[Any, Any, torch.Tensor], task: Any = None,
                      item: Any = None) -> Prediction:
    """`predict`'s `(labels, decoded, probs)` in fastai's shape: a single-label item's index as a 0-d tensor, a
    multi-label item's names as a `MultiCategory`; for regression the tuple of predicted numbers, and for points
    a [n, 2] tensor in the item's pixels.

    Example:
        >>> fastai_prediction((("cat",), None, torch.zeros(2)))[0]
        MultiCategory(['cat'])
    """
    labels, decoded, probs = prediction
    if isinstance(task, Regression):
        fields = ((unscale_points(labels, source_size(item)) if task.points else labels), decoded, probs)
    else:
        # fastai's pred_idx is a 0-d long tensor (`pred_idx.item()`); unfreeze's core gives an int.
        index = torch.tensor(decoded) if isinstance(decoded, int) and not isinstance(decoded, bool) else decoded
        fields = ((MultiCategory(labels) if isinstance(labels, tuple) else labels), index, probs)
    # The unknown flag travels as attributes of the result (`inference.Prediction`).
    return Prediction(fields, unknown=getattr(prediction, "unknown", None),
                      ood_score=getattr(prediction, "ood_score", None))


def fastai_prediction_with_input(prediction: Prediction, image: torch.Tensor) -> Prediction:
    """fastai's `predict(item, with_input=True)`: `(image, label, decoded, probs)`, the unknown flag kept.

    Example:
        >>> fastai_prediction_with_input(Prediction(("cat", 0, torch.ones(1))), torch.zeros(3, 2, 2))[1]
        'cat'
    """
    return Prediction((image, *prediction), unknown=prediction.unknown, ood_score=prediction.ood_score)


def fastai_preds_layout(results: tuple[Any, ...], with_preds: bool, with_targs: bool,
                        with_decoded: bool) -> tuple[Any, ...]:
    """`get_preds`'s results with fastai's `with_preds=False` / `with_targs=False`: None in their place, and
    no decoded predictions without the predictions (fastai's order and length).

    Example:
        >>> fastai_preds_layout((1, 2, 3), with_preds=False, with_targs=True, with_decoded=True)
        (None, 2)
    """
    layout = list(results)
    if not with_preds:
        layout[0] = None
        if with_decoded:
            del layout[2]
    if not with_targs:
        layout[1] = None
    return tuple(layout)


class _Text(str):
    """Text that a notebook displays as itself (no quotes, real line breaks), as fastai's summary."""

    def __repr__(self) -> str:
        return str(self)


# ---------------------------------------------------------------------------- save and load by name


class NamedFiles(Protocol):
    """What fastai's save/load by name use of a learner."""

    path: Path
    model_dir: Path
    device: torch.device

    def save_weights(self, path: str | Path) -> Path: ...

    def load_weights(self, path: str | Path, *, strict: bool = True) -> None: ...

    def state_dict(self, keys: Iterable[str] | None = None, *, grads: bool = False) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def model_file(learner: LearnerView, name: str | Path) -> Path:
    """Where `learn.save(name)` writes: `learner.path / learner.model_dir / "<name>.safetensors"`."""
    file = learner.path / learner.model_dir / name
    return file if file.suffix == ".safetensors" else file.with_name(f"{file.name}.safetensors")


def _optimizer_file(weights: Path) -> Path:
    """The optimizer side file of `save(name, with_opt=True)`: "<name>.opt.pt" next to the weights."""
    return weights.with_suffix(".opt.pt")


def save_named(learner: NamedFiles, name: str | Path, with_opt: bool = False) -> Path:
    """fastai's `learn.save(name)`: weights to `model_file(name)`, the optimizer state beside them if asked.

    Without `with_opt`, an older optimizer file of that name is removed, so that `load_named` cannot
    pair the new weights with stale moments.
    """
    weights = learner.save_weights(model_file(learner, name))
    optimizer_file = _optimizer_file(weights)
    if distributed.is_main_process():
        if with_opt:
            with atomic_path(optimizer_file) as tmp:
                save_torch(learner.state_dict(keys=["optimizer"]), tmp)
        elif optimizer_file.exists():
            optimizer_file.unlink()
    distributed.barrier()
    return weights


def load_named(learner: NamedFiles, name: str | Path, with_opt: bool | None = None, strict: bool = True) -> None:
    """fastai's `learn.load(name)`: the weights `save_named` wrote, and the optimizer state if saved.

    `strict=False` skips the weights only the file or only the model names (`load_weights`).

    Raises:
        FileNotFoundError: No such saved model (the message lists the saved names), or `with_opt=True`
            without a saved optimizer state.
    """
    weights = model_file(learner, name)
    if not weights.is_file():
        folder = weights.parent
        saved = sorted(file.name.removesuffix(".safetensors") for file in folder.glob("*.safetensors"))
        raise FileNotFoundError(f"No saved model {weights}. Saved names in {folder}: {saved or 'none'}. "
                                "Use a name given to learn.save(name), or set learn.path to where it was saved.")
    optimizer_file = _optimizer_file(weights)
    if with_opt and not optimizer_file.is_file():
        raise FileNotFoundError(f"No optimizer state at {optimizer_file}: save with learn.save({str(name)!r}, "
                                "with_opt=True), or load with with_opt=False.")
    learner.load_weights(weights, strict=strict)
    if with_opt is not False and optimizer_file.is_file():
        learner.load_state_dict(torch.load(optimizer_file, map_location=learner.device, weights_only=True))


# ---------------------------------------------------------------------------- fastai's methods


class FastaiHost(NamedFiles, Protocol):
    """What the fastai-named methods use of the learner they are mixed into."""

    @property
    def stepper(self) -> StepperView: ...

    progress: Any  # train.recipes.FitProgress: `plan.n_epoch` once a fit has started


_Host = TypeVar("_Host")  # the learner a method returns for chaining, with its own type


class FastaiMethods:
    """fastai's method names on a learner: `save`, `load`, `model_file`, `to_fp16`, `to_fp32`, `summary`.

    Mixed into `Learner`; each method is written against the `FastaiHost` protocol (public members).
    A fastai attribute the learner spells otherwise (`learn.opt`, `learn.no_logging`) raises an
    AttributeError that names unfreeze's spelling (`fastai_names.FASTAI_ATTRIBUTES`).
    """

    def __getattr__(self, name: str) -> Any:
        raise fastai_attribute_error(self, name)

    @property
    def n_epoch(self: FastaiHost) -> int:
        """fastai's `learn.n_epoch`: the epochs of the current (or last) fit; 1 before any fit, as fastai's
        (`learn.epoch` is the epoch within it, `learn.epochs_done` counts the epochs of every fit).

        Example:
            >>> learn.fit_one_cycle(3); learn.n_epoch  # doctest: +SKIP
            3
        """
        plan = self.progress.plan
        return 1 if plan is None else int(plan.n_epoch)

    def model_file(self: FastaiHost, name: str | Path) -> Path:
        """Where `save(name)` writes the weights: `path / model_dir / "<name>.safetensors"`.

        Example:
            >>> learn.model_file("stage-1")  # doctest: +SKIP
            PosixPath('data/models/stage-1.safetensors')
        """
        return model_file(self, name)  # type: ignore[arg-type]

    def save(self: FastaiHost, name: str | Path, with_opt: bool = False) -> Path:
        """fastai's `learn.save`: the weights to `model_file(name)` (safetensors, not a pickle).

        Args:
            name: A name such as "stage-1", under `learn.path/models/`.
            with_opt: Also save the optimizer state (Adam moments) to "<name>.opt.pt", a file that
                loads with `torch.load(weights_only=True)`.

        Example:
            >>> learn.save("stage-1")  # doctest: +SKIP
            PosixPath('data/models/stage-1.safetensors')
        """
        return save_named(self, name, with_opt)

    def load(self: _Host, name: str | Path, device: str | torch.device | bool | None = None,
             with_opt: bool | None = None, strict: bool = True) -> _Host:
        """fastai's `learn.load`: the weights `save(name)` wrote, and the optimizer state if saved.

        Args:
            name: The name given to `save`.
            device: fastai's device to read the file onto; the weights end on the model's device either way
                (fastai copies them into the model too), so any valid device gives the same learner. A bool
                here is `with_opt`, the second argument of earlier versions (`learn.load("a", True)`).
            with_opt: None loads the optimizer state when one was saved; True requires it; False
                leaves the optimizer as it is.
            strict: False skips the weights that only the file or only the model names, as fastai's
                (a tensor of another shape still fails).

        Returns:
            The learner itself, as fastai's (`learn = learn.load("stage-1")` works).

        Example:
            >>> learn.load("stage-1")  # doctest: +SKIP
        """
        if isinstance(device, bool):  # load(name, with_opt), as unfreeze spelled it before fastai's device
            device, with_opt = None, device
        if device is not None:
            torch.device(device)  # a misspelt device fails here, as in fastai, though the weights go to the model's
        load_named(self, name, with_opt, strict)  # type: ignore[arg-type]  # the host is a NamedFiles
        return self

    def to_fp16(self: _Host) -> _Host:
        """Mixed precision, as fastai's `to_fp16`; returns the learner for chaining.

        On CUDA the learner autocasts already (bf16, or fp16 with a loss scaler where bf16 is missing),
        so this only undoes `to_fp32`. Elsewhere (CPU, MPS) it leaves float32 on and says so once.

        Example:
            >>> learn = vision_learner(dls, "resnet34").to_fp16()  # doctest: +SKIP
        """
        host: FastaiHost = self  # type: ignore[assignment]
        if not host.stepper.set_mixed_precision(True):
            note_once(f"to_fp16: mixed precision runs on CUDA only; on {host.device.type} the learner keeps "
                      "float32 (nothing to change in your code).")
        return self

    def to_fp32(self: _Host) -> _Host:
        """Turn mixed precision off: train and evaluate in float32 on every device; returns the learner.

        Example:
            >>> learn.to_fp32().fit_one_cycle(1)  # doctest: +SKIP
        """
        host: FastaiHost = self  # type: ignore[assignment]
        host.stepper.set_mixed_precision(False)
        return self

    def summary(self) -> str:
        """The learner as a table: groups with trainable and frozen parameters, input, optimizer, loss
        and callbacks. Printed in a script; in a notebook the returned text displays itself.

        Example:
            >>> learn.summary()  # doctest: +SKIP
        """
        from unfreeze.train.summary import learner_summary

        text = learner_summary(self)  # type: ignore[arg-type]  # the host is a LearnerView
        if in_notebook():
            return _Text(text)
        print(text)
        return text


# ---------------------------------------------------------------------------- fastai's callbacks


def _mode_from_comp(comp: Any) -> str:
    """fastai's `comp` (np.less, np.greater or None) as a mode ("min", "max", "auto")."""
    if comp is None:
        return "auto"
    name = getattr(comp, "__name__", "")
    if name in ("less", "lt"):
        return "min"
    if name in ("greater", "gt"):
        return "max"
    raise ValueError(f"comp must be np.less, np.greater or None (fastai's values), got {comp!r}. "
                     "Or use mode='min' / 'max' with unfreeze's own callbacks.")


class SaveModelCallback(SaveBestModel):
    """fastai's spelling of `SaveBestModel`: saves under `learn.path/models/{fname}.safetensors`.

    Like fastai's, it saves the weights whenever `monitor` improves (by more than `min_delta`) and loads
    the best ones when the fit ends; the file is the one `learn.save(fname)` writes and `learn.load(fname)`
    reads, in safetensors instead of a pickle. With `with_opt=True` the optimizer state is saved too.

    Args:
        monitor: A column of the epoch logs: "valid_loss" or a metric's name.
        comp: np.less or np.greater; None picks from the name (max for accuracy/f1/score, else min).
        min_delta: The least change that counts as an improvement.
        fname: The file name under the learner's `path/model_dir`, without suffix.
        with_opt: Also save the optimizer state, as `learn.save(fname, with_opt=True)`.

    Example:
        >>> learn.fit_one_cycle(5, cbs=SaveModelCallback(monitor="error_rate", fname="best"))  # doctest: +SKIP
        >>> learn.load("best")  # doctest: +SKIP
    """

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, fname: str = "model",
                 with_opt: bool = False) -> None:
        super().__init__(monitor, path=f"{fname}.safetensors", mode=_mode_from_comp(comp), restore_best=True)
        self.min_delta, self.fname, self.with_opt = min_delta, fname, with_opt

    def before_fit(self, learner: LearnerView) -> None:
        super().before_fit(learner)
        self.path = model_file(learner, self.fname)  # read from the learner, which it never writes

    def _save(self, learner: LearnerView) -> None:
        save_named(learner, self.fname, with_opt=self.with_opt)  # type: ignore[arg-type]  # a Learner is NamedFiles


class EarlyStoppingCallback(EarlyStopping):
    """fastai's spelling of `EarlyStopping`, with fastai's `patience`: stop after `patience` epochs
    in a row without improvement (unfreeze's `EarlyStopping(patience=p)` waits p + 1).

    Example:
        >>> learn.fit_one_cycle(20, cbs=EarlyStoppingCallback(monitor="valid_loss", patience=2))  # doctest: +SKIP
    """

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0,
                 patience: int = 1) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a whole number >= 0, got {patience!r}.")
        # fastai stops once `wait >= patience`, so 0 and 1 both stop at the first epoch without improvement.
        super().__init__(monitor, patience=max(patience - 1, 0), min_delta=min_delta, mode=_mode_from_comp(comp))


def _fastai_alpha(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"{name}(alpha=...) needs a number > 0 (fastai's default is {name}'s: "
                         f"{'0.4' if name == 'MixUp' else '1.0'}), got {alpha!r}. Leave the callback out to not mix.")
    return float(alpha)


class MixUp(MixupCutmix):
    """fastai's `MixUp(alpha)`: every training batch blended with itself reversed, weight ~ Beta(alpha, alpha).

    A thin spelling of `MixupCutmix(mixup_alpha=alpha)` (timm's Mixup). Where fastai mixes the two losses,
    unfreeze mixes the targets into class probabilities, which cross-entropy (also `CrossEntropyLossFlat`
    and `LabelSmoothingCrossEntropy`) and binary cross-entropy take as they are: the same loss for
    cross-entropy. Validation batches are never mixed.

    Args:
        alpha: The Beta distribution's parameter; fastai's default 0.4.

    Example:
        >>> learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=MixUp())  # doctest: +SKIP
        >>> learn.fit_one_cycle(5, 3e-3, cbs=MixUp(alpha=0.4))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.4) -> None:
        self.alpha = _fastai_alpha(alpha, "MixUp")
        super().__init__(mixup_alpha=self.alpha)


class CutMix(MixupCutmix):
    """fastai's `CutMix(alpha)`: a box of another image pasted into each training image, area ~ Beta(alpha, alpha).

    A thin spelling of `MixupCutmix(cutmix_alpha=alpha)`; the targets become the pasted areas' class
    probabilities, as with `MixUp`.

    Args:
        alpha: The Beta distribution's parameter; fastai's default 1.0.

    Example:
        >>> learn.fit_one_cycle(5, 3e-3, cbs=CutMix(alpha=1.0))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _fastai_alpha(alpha, "CutMix")
        super().__init__(cutmix_alpha=self.alpha)
