"""The unfreeze runner (compare.py starts it as a subprocess in `.venv`).

    .venv/bin/python benchmarks/run_unfreeze.py --scenario fine_tune --config defaults --seed 0

Two configurations of `fine_tune(2)`:
- `defaults`: whatever `vision_learner(dls, "efficientnet_lite0", metrics=[error_rate])` and
  `fine_tune(2)` do with unfreeze's own defaults;
- `fastai_exact`: fastai's settings spelled out: 2 parameter groups, train_bn=True, lr_mult=100.
The data has no augmentation, as in the fastai and plain runners (fastai's Resize of a square image
is a plain resize).
"""

from __future__ import annotations

from typing import Any

import common

CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    # learner: vision_learner keywords; fine_tune: fine_tune keywords.
    "defaults": {"learner": {}, "fine_tune": {}},
    "fastai_exact": {"learner": {"n_groups": 2, "train_bn": True}, "fine_tune": {"lr_mult": 100}},
}


def build(setup: common.Setup, seed: int, config: str) -> tuple[Any, Any]:
    """The data loaders and a fresh learner (body frozen, as vision_learner returns it)."""
    from unfreeze.data import ImageDataLoaders

    try:
        from unfreeze import error_rate, vision_learner
    except ImportError:  # the top-level re-exports are not there yet
        from unfreeze.train.builders import vision_learner
        from unfreeze.train.metrics import error_rate

    dls = ImageDataLoaders.from_folder(
        common.build_dataset(setup), train="train", valid="valid", seed=seed, size=setup.size,
        bs=setup.batch_size, augment=False, num_workers=setup.num_workers, device="cpu",
    )
    learn = vision_learner(
        dls, "efficientnet_lite0", metrics=[error_rate], seed=seed, quiet=True, **CONFIGS[config]["learner"]
    )
    return dls, learn


def predictions(learn: Any) -> Any:
    """Softmax probabilities over the validation set, through the public inference API."""
    if hasattr(learn, "get_preds"):
        return learn.get_preds()[0]
    from unfreeze.inference import get_preds

    return get_preds(learn)[0]


def main() -> None:
    args = common.runner_arguments(__doc__.splitlines()[0])
    if args.config == "default":
        args.config = "defaults"
    if args.config not in CONFIGS:
        raise SystemExit(f"--config must be one of {sorted(CONFIGS)}, got {args.config!r}.")
    setup = common.setup_for(args.quick)
    common.prepare_process(setup)
    import torch

    times: dict[str, float] = {}
    result: dict[str, Any] = {"runner": "unfreeze", "config": args.config, "scenario": args.scenario, "seed": args.seed}
    with common.timed(times, "setup_s"):
        _, learn = build(setup, args.seed, args.config)
    if args.scenario == "fine_tune":
        with common.timed(times, "wall_s"):
            learn.fine_tune(setup.epochs, **CONFIGS[args.config]["fine_tune"])
        history = learn.recorder.history
        result["error"] = float(history[-1]["error_rate"])
        result["epoch_times_s"] = [round(float(row["time"]), 2) for row in history]
    elif args.scenario == "lr_find":
        with common.timed(times, "wall_s"):
            found = learn.lr_find(num_it=setup.lr_find_iterations, plot=None, quiet=True)
        result["iterations"] = len(found.lrs)
        result["suggested_lr"] = float(found.valley)
    else:
        predictions(learn)  # untimed warm-up pass, as in the other runners
        with common.timed(times, "wall_s"):
            probabilities = predictions(learn)
        result["images_per_s"] = len(probabilities) / times["wall_s"]
    result.update(times)
    result["total_s"] = times["setup_s"] + times["wall_s"]
    result["num_workers"] = setup.num_workers
    result["threads"] = torch.get_num_threads()
    result["learner"] = {"n_groups": learn.n_groups, "train_bn": learn.train_bn, **CONFIGS[args.config]["fine_tune"]}
    result["versions"] = common.library_versions(["unfreeze", "torch", "timm"])
    common.emit(result)


if __name__ == "__main__":
    main()
