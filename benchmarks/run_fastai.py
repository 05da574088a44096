"""The fastai 2.8 runner. Runs inside `.venv-fastai` (compare.py starts it as a subprocess).

    .venv-fastai/bin/python benchmarks/run_fastai.py --scenario fine_tune --seed 0

fastai gets timm's efficientnet_lite0 with the bundled ImageNet weights through a model constructor,
so `vision_learner` cuts the body at the pooling layer, adds its own head and splits the model into
2 parameter groups (body, head), as it does for every timm model. Progress bars and the epoch table
are switched off so that only the result line is printed.
"""

from __future__ import annotations

import warnings
from typing import Any

import common

SCENARIO_CONFIGS = {"default": "fastai defaults: fine_tune(2), train_bn=True, lr_mult=100, 2 groups"}


def efficientnet_lite0(pretrained: bool = True, **_: Any) -> Any:
    """The constructor fastai calls as `arch(pretrained=...)`."""
    return common.timm_efficientnet_lite0(pretrained=pretrained)


def build(setup: common.Setup, seed: int) -> tuple[Any, Any]:
    """The data loaders and a fresh learner (body frozen, as vision_learner returns it)."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        error_rate,
        set_seed,
        vision_learner,
    )

    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        common.build_dataset(setup),
        train="train",
        valid="valid",
        item_tfms=Resize(setup.size),
        batch_tfms=Normalize.from_stats(list(setup.mean), list(setup.std)),
        bs=setup.batch_size,
        num_workers=setup.num_workers,
        device="cpu",
    )
    learn = vision_learner(dls, efficientnet_lite0, metrics=error_rate, pretrained=True)
    return dls, learn


def main() -> None:
    args = common.runner_arguments(__doc__.splitlines()[0])
    setup = common.setup_for(args.quick)
    common.prepare_process(setup)
    warnings.filterwarnings("ignore")
    import torch

    times: dict[str, float] = {}
    result: dict[str, Any] = {"runner": "fastai", "config": args.config, "scenario": args.scenario, "seed": args.seed}
    with common.timed(times, "setup_s"):
        dls, learn = build(setup, args.seed)
    with learn.no_bar(), learn.no_logging():
        if args.scenario == "fine_tune":
            with common.timed(times, "wall_s"):
                learn.fine_tune(setup.epochs)
            # The last row of the epoch table: train_loss, valid_loss, error_rate.
            result["error"] = float(learn.recorder.values[-1][-1])
            result["epoch_s"] = None
        elif args.scenario == "lr_find":
            with common.timed(times, "wall_s"):
                suggestion = learn.lr_find(num_it=setup.lr_find_iterations, show_plot=False)
            result["iterations"] = len(learn.recorder.lrs)
            result["suggested_lr"] = float(suggestion.valley)
        else:
            # Steady-state throughput: one untimed pass, then a timed pass over the validation set.
            learn.get_preds(dl=dls.valid)
            with common.timed(times, "wall_s"), torch.no_grad():
                predictions, _ = learn.get_preds(dl=dls.valid)
            result["images_per_s"] = len(predictions) / times["wall_s"]
    result.update(times)
    result["total_s"] = times["setup_s"] + times["wall_s"]
    result["num_workers"] = setup.num_workers
    result["threads"] = torch.get_num_threads()
    result["versions"] = common.library_versions(["fastai", "torch", "timm"])
    common.emit(result)


if __name__ == "__main__":
    main()
