"""Builders that put data, a model and a Learner together in one call: from a backbone name
(`vision_learner`) or from an export (`load_learner`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unfreeze.inference import ExportError, inference_dls, read_export
from unfreeze.models import create_model
from unfreeze.tasks import MultiLabel
from unfreeze.train.callbacks import Callback
from unfreeze.train.fastai_idioms import export_file, fastai_head_choice, learner_device
from unfreeze.train.learner import Learner
from unfreeze.train.metrics import Metric
from unfreeze.train.recipe_settings import Recipe

__all__ = ["cnn_learner", "load_learner", "vision_learner"]


def vision_learner(
    dls: Any,
    arch: str | Callable[..., nn.Module] | nn.Module = "efficientnet_lite0",
    metrics: Metric | str | Sequence[Metric | str] | None = None,
    pretrained: bool = True,
    weights: str | Path | None = None,
    n_groups: int = 3,
    train_bn: bool | None = None,
    head: str | nn.Module | None = None,
    *,
    seed: int | None = None,
    device: str | torch.device | None = None,
    quiet: bool = False,
    loss_func: nn.Module | None = None,
    class_weights: str | Sequence[float] | None = None,
    grad_accum: int = 1,
    sync_bn: bool = False,
    weight_decay: float | None = None,
    wd: float | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
    path: str | Path | None = None,
    model_dir: str | Path = "models",
    recipe: Recipe | None = None,
    y_range: tuple[float, float] | None = None,
    n_out: int | None = None,
    optimizer: str | None = None,
    opt_func: Any = None,
    ps: float = 0.5,
    lin_ftrs: Sequence[int] | None = None,
    concat_pool: bool = True,
    custom_head: nn.Module | None = None,
    n_in: int = 3,
    normalize: bool = True,
) -> Learner:
    """A Learner with a pretrained body, a new head for `dls`'s classes, and the body frozen.

    Without pretrained weights (`pretrained=False`) nothing is frozen, as in fastai: a random body has
    nothing to protect from the new head's first gradients.

    The data is normalized with the statistics the backbone's weights expect.

    Args:
        dls: `ImageDataLoaders`.
        arch: A timm name ("resnet34", "convnext_tiny.fb_in1k"), a constructor such as torchvision's
            `resnet34`, or a built `nn.Module`. Defaults to the bundled `efficientnet_lite0`.
        metrics: Metric callables or names, e.g. `[error_rate]` (`dls.task.default_metrics()` names
            the usual ones for the data: error_rate, or accuracy_multi and f1_multi for multi-label).
        pretrained: Load pretrained weights (explicit file, local caches, bundled, then download).
            Raises `WeightsNotFoundError` rather than silently training from random weights.
        weights: An explicit weights file (.safetensors, .pth, .bin).
        n_groups: Parameter groups: `n_groups - 1` body groups plus the head (fastai gives timm models 2).
        train_bn: True keeps norm layers of frozen groups training (fastai). False (Keras) runs the
            body's norm layers in inference mode throughout and freezes their weights with their
            group, so a frozen epoch costs about a forward pass. None (default) picks False for a
            pretrained body, where it gave the lower error (benchmarks/results/defaults.md), and
            True when training from scratch, where the body's statistics must be learned.
        head: "fastai" (concat pooling, BN, dropout, two linear layers), "linear", or a module; None
            (default): the recipe's head when `recipe` is given (`Recipe().head`), else "fastai".
        seed: Seeds the head's initialisation too; otherwise as in `Learner`.
        device, quiet, loss_func, class_weights, grad_accum, sync_bn, weight_decay, wd, cbs, path,
            model_dir: As in `Learner`.
        recipe: The `Recipe` that `learn.fit_recipe()` runs (checked against the data now); None: `Recipe()`.
        y_range: `(low, high)`: the head ends in a sigmoid scaled to that range, as fastai's regression
            `y_range` (fastbook's head-pose model: `y_range=(-1, 1)`).
        n_out: Outputs of the head; default the data's classes (or, for regression, its values).
        optimizer, opt_func: As in `Learner` ("adamw", "sgd", "ranger"; fastai's `opt_func=Adam`, ...).
        ps: Dropout of the fastai head's last layer; the layers before it get `ps / 2` (fastai's default 0.5).
        lin_ftrs: The fastai head's hidden widths, as fastai's (default `[512]`; `[]`: no hidden layer).
        concat_pool: The fastai head pools max and average (True) or average only (False), as fastai's.
        custom_head: fastai's spelling of `head=<module>`: maps the body's features to the outputs.
        n_in: Input channels: 3 only, as unfreeze's loaders always give RGB (grayscale files become three
            equal channels); another value is refused.
        normalize: False leaves the images unnormalized (mean 0, std 1, recorded in the export), as fastai's.

    Example:
        >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)  # doctest: +SKIP
        >>> learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])  # doctest: +SKIP
        >>> learn.fine_tune(2)  # doctest: +SKIP
    """
    head, hidden = fastai_head_choice(head, custom_head, ps, lin_ftrs, concat_pool)
    if n_in != 3:
        raise ValueError(f"n_in={n_in}: unfreeze's loaders always give 3 channels (a grayscale file becomes three "
                         "equal channels, which a pretrained body expects); leave n_in out.")
    if head is None:
        head = recipe.head if recipe is not None else "fastai"
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = create_model(
            arch, dls.n_classes if n_out is None else n_out, pretrained=pretrained, weights=weights,
            n_groups=n_groups, head=head, y_range=y_range, ps=ps, hidden=hidden, concat_pool=concat_pool,
        )
    if not normalize:  # fastai's normalize=False: the model sees pixels in [0, 1]; the export records it
        model.mean, model.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if train_bn is None:
        train_bn = not pretrained
    learn = Learner(
        dls, model, metrics=metrics, loss_func=loss_func,
        class_weights=class_weights, train_bn=train_bn, device=device, seed=seed, quiet=quiet,
        grad_accum=grad_accum, sync_bn=sync_bn, weight_decay=weight_decay, wd=wd, cbs=cbs, path=path,
        model_dir=model_dir, optimizer=optimizer, opt_func=opt_func,
    )
    if recipe is not None:
        learn.recipe = recipe.check(multi_label=isinstance(learn.task, MultiLabel))
    if pretrained:
        # Only pretrained weights need protecting from the new head's first, large gradients; a body
        # with random weights trains from the start, as in fastai.
        learn.freeze()
    return learn


# fastai's older name, kept so that the seed workflow's `cnn_learner(dls, resnet34, ...)` runs unchanged.
cnn_learner = vision_learner


def _export_in_folder(path: Path) -> Path:
    """A run directory's model.unfreeze (or a folder's only .unfreeze file); any other path as it is."""
    if not path.is_dir():
        return path
    if (path / "model.unfreeze").is_file():
        return path / "model.unfreeze"
    exports = sorted(path.glob("*.unfreeze"))
    if len(exports) == 1:  # fastai's learn.export() in learn.path: export.unfreeze
        return exports[0]
    found = f"it holds {', '.join(export.name for export in exports)}" if exports else "it holds no .unfreeze file"
    hint = " (the run has not finished, or was interrupted without --save-on-interrupt)" if (
        path / "config.json").is_file() else ""
    raise ExportError(f"{path} is a folder without model.unfreeze{hint}; {found}. Pass a finished run directory "
                      "or the .unfreeze file itself, e.g. load_learner('runs/pets/model.unfreeze')")


def load_learner(path: str | Path, device: str | torch.device | None = None, cpu: bool | None = None) -> Learner:
    """Rebuild a learner for inference from an export: no training data, network or pretrained file.

    The architecture is built with random weights from the stored config, then the stored weights
    are loaded. The file is checked before anything is read into tensors and is never unpickled.

    Args:
        path: A file written by `Learner.export`, or a run directory of `unfreeze train` (its
            model.unfreeze is loaded, as every CLI command does). fastai's "export.pkl" name works when the export was
            written from fastai code (`learn.export()` writes export.unfreeze next to where fastai's
            pickle would be): a missing .pkl is looked up as `<stem>.unfreeze`. An actual pickle is
            refused with the steps that convert it.
        device: Where the model runs ("cpu", "cuda", ...); default the CPU.
        cpu: fastai's switch: True (default) runs on the CPU, False on the best device available
            (CUDA, then MPS). Pass `device` or `cpu`, not conflicting values of both.

    Returns:
        A `Learner` whose `predict`, `predict_batch`, `get_preds(dl=learn.dls.test_dl(...))` and `tta`
        work as on the original (its own train and valid loaders are empty).

    Raises:
        ExportError: Missing, truncated, pickled, not an export, another format version, or weights that
            do not fit the architecture.
        ExportArchitectureError: The architecture is unknown to this installation's timm/torchvision.

    Example:
        >>> learn = load_learner("model.unfreeze")  # doctest: +SKIP
        >>> learn = load_learner("runs/pets")  # a run directory: its model.unfreeze  # doctest: +SKIP
        >>> learn.predict("cat.jpg")[0]  # doctest: +SKIP
        'cat'
    """
    device, path = learner_device(device, cpu), export_file(_export_in_folder(Path(path).expanduser()))
    metadata, model, trust = read_export(path, with_trust=True)
    learn = Learner(inference_dls(metadata, device), model, device=device, seed=metadata.get("seed"), quiet=True)
    learn.dls.set_normalization(metadata["mean"], metadata["std"])  # exactly what training used
    learn.model.eval()
    learn.trust = trust
    if not trust.stored:
        _say_once_without_trust(path)
    return learn


_SAID_WITHOUT_TRUST: list[bool] = []  # said once per process: a server loading many old files says it once


def _say_once_without_trust(path: Path) -> None:
    if _SAID_WITHOUT_TRUST:
        return
    _SAID_WITHOUT_TRUST.append(True)
    warnings.warn(f"{path} was exported before calibrated probabilities and the unknown flag: its probabilities are "
                  "the raw softmax (temperature 1) and predictions carry no unknown flag (unknown and ood_score are "
                  "None). Retrain, or call learn.calibrate() on a learner with its data and export again, to get "
                  "both.", UserWarning, stacklevel=3)
