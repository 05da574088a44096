"""`Learner.summary()`: the learner as a text table, written against the backbone contract.

fastai's summary lists every layer with its output shape, which takes a forward pass and runs to
hundreds of lines for a resnet. What decides transfer learning is coarser: which parameter groups
train, how many parameters each holds, and what the optimizer, loss and callbacks are. That is what
this table shows, from the learner's public members alone (`LearnerView`) (no forward pass, no data read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unfreeze.train.protocols import LearnerView

__all__ = ["learner_summary"]


def learner_summary(learner: LearnerView) -> str:
    """The summary table of `learner` (what `Learner.summary()` prints).

    Example:
        >>> print(learner_summary(learn))  # doctest: +SKIP
        Learner: test_resnet, 3 classes, on cpu
        group        tensors    trainable       frozen
        ...
    """
    params = learner.groups.params
    arch = getattr(learner.model, "arch", type(learner.model).__name__)
    vocab = list(getattr(learner.dls, "vocab", []))
    shown = ", ".join(vocab[:8]) + (", ..." if len(vocab) > 8 else "")
    lines = [f"Learner: {arch}, {len(vocab)} classes ({shown}), on {learner.device}", ""]
    lines.append(f"{'group':<10} {'tensors':>8} {'trainable':>14} {'frozen':>14}")
    totals = [0, 0]
    for index, names in enumerate(learner.groups.groups):
        # A plain nn.Module (fastai's Learner(dls, module)) is one group of every layer, not a head.
        label = "all" if learner.n_groups == 1 else "head" if index == learner.n_groups - 1 else f"body {index}"
        trainable = sum(params[name].numel() for name in names if params[name].requires_grad)
        frozen = sum(params[name].numel() for name in names) - trainable
        totals[0] += trainable
        totals[1] += frozen
        lines.append(f"{label:<10} {len(names):>8} {trainable:>14,} {frozen:>14,}")
    lines.append(f"{'total':<10} {len(params):>8} {totals[0]:>14,} {totals[1]:>14,}")
    lines.append("")
    size = getattr(learner.dls, "size", None)
    batch_size = getattr(getattr(learner.dls, "train", None), "batch_size", None)
    lines.append(f"Input: batches of {batch_size} x 3 x {size} x {size}")
    frozen_note = (f"groups 0-{learner.frozen_to - 1} frozen (freeze_to({learner.frozen_to}))"
                   if learner.frozen_to else "nothing frozen")
    norm_note = "norm layers of frozen groups train (train_bn=True)" if learner.train_bn else (
        "body norm layers keep their running statistics (train_bn=False)")
    lines.append(f"Freezing: {frozen_note}; {norm_note}")
    optimizer = ("AdamW (betas 0.9/0.99, eps 1e-5)" if learner.stepper.optimizer_name == "adamw"
                 else "SGD (momentum 0.9)")
    lines.append(f"Optimizer: {optimizer}, weight decay {learner.weight_decay:g} (not on biases and norm layers)")
    lines.append(f"Loss: {type(learner.loss_func).__name__}")
    lines.append(f"Metrics: {', '.join(learner.metric_names) or 'none'}")
    precision = "float32" if learner.amp_dtype is None else f"autocast {str(learner.amp_dtype).removeprefix('torch.')}"
    lines.append(f"Precision: {precision}")
    callbacks = ["Recorder", "ProgressCallback", *(type(callback).__name__ for callback in learner.callbacks)]
    lines.append(f"Callbacks: {', '.join(callbacks)}")
    return "\n".join(lines)
