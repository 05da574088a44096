"""An exponential moving average (EMA) of the weights, kept during training.

The average of the weights along the last few hundred steps usually generalises better than the
last step's weights, at the cost of one copy of the model. The averaging is timm's `ModelEmaV3`
(parameters and buffers, BatchNorm running statistics included); this callback decides when it
runs and which weights the validation pass and the final model see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unfreeze.train.callbacks import Callback

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3

    from unfreeze.train.protocols import LearnerView

__all__ = ["EMA"]


class EMA(Callback):
    """Keep an EMA of the model's weights; validate with it and put it in the model at the end.

    After every optimizer step: `ema = decay * ema + (1 - decay) * weights`, over every parameter and
    floating-point buffer (integer buffers such as BatchNorm's batch counter are copied). The first
    update copies the weights (timm's convention), so the average never mixes in the weights from
    before training. With `warmup`, the decay of update `k` (from 1) is `min(decay, 1 - k ** (-2/3))`:
    it follows the weights closely at first and approaches `decay` over thousands of steps
    (0.99 after about 1,000 updates, 0.999 after 31,600), so that short fine-tuning runs still get an
    average that has left the starting weights behind.

    Frozen parameters do not change, and the EMA of a constant is that constant, bit for bit: a
    frozen body stays exactly the pretrained body. The average continues across fits with the same
    learner (`fine_tune`'s two phases are one average).

    Args:
        decay: Weight of the old average at each step, in [0, 1]. 0 makes the EMA the weights.
        warmup: Ramp the decay up from 0 as above (recommended for runs under ~30,000 steps).
        validate_with_ema: Run each epoch's validation with the averaged weights, so the table,
            `EarlyStopping` and `KeepBest` judge them. The average stays in the model until the next
            epoch starts, so what `KeepBest`, `SaveBestModel` and the checkpoint save at the end of an
            epoch are the weights that were scored; the model's own weights come back bit for bit
            before the next epoch trains (a checkpoint holds them in this callback's state, so a
            resume continues training from them).
        apply_at_end: Copy the averaged weights into the model when the fit ends. On by default,
            so that the model you predict with, save and export is the one whose validation scores
            the table showed (with `validate_with_ema`); Keras's `use_ema` does the same. With
            `fine_tune`, the unfrozen phase then starts from the frozen phase's average. Turn it off
            to keep the last step's weights and read the average from `state_dict()["weights"]`.
        device: Keep the average on another device, e.g. "cpu" to save GPU memory (each update
            then copies the weights to that device: slower).

    The updates run in the strict event order (each step's loss is read before the next step
    starts), so that an average never takes in the weights of a step whose loss was NaN. On a GPU
    that turns off the loop's one-step-late loss read for the fit; the cost is not yet measured.

    Example:
        >>> learn.fit_one_cycle(5, 1e-3, callbacks=[EMA(decay=0.999)])  # doctest: +SKIP
    """

    def __init__(
        self,
        decay: float = 0.9998,
        warmup: bool = True,
        validate_with_ema: bool = True,
        apply_at_end: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be a number in [0, 1], such as 0.9998; got {decay!r}.")
        self.decay = float(decay)
        self.warmup = warmup
        self.validate_with_ema = validate_with_ema
        self.apply_at_end = apply_at_end
        self.device = None if device is None else torch.device(device)
        self.updates = 0  # updates of the average so far: the position in the warmup
        self._ema: ModelEmaV3 | None = None
        self._model: nn.Module | None = None
        self._pending: dict[str, Any] | None = None  # a state loaded before the average exists
        self._raw_weights: list[torch.Tensor] | None = None  # the model's own weights while validating

    # ------------------------------------------------------------------ events

    def before_fit(self, learner: LearnerView) -> None:
        if self._ema is None or self._model is not learner.model:
            from timm.utils import ModelEmaV3

            # A new learner (or the first fit) starts a new average from its current weights.
            self._model = learner.model
            self._ema = ModelEmaV3(
                learner.model, decay=self.decay, use_warmup=self.warmup, device=self.device, foreach=True
            )
            self.updates = 0
            if self._pending is not None:
                self._load(self._pending)
                self._pending = None

    def after_batch(self, step: int, logs: dict[str, float]) -> None:
        if self._ema is not None and self._model is not None:
            self.updates += 1
            self._ema.update(self._model, step=self.updates)

    def before_validate(self, epoch: int) -> None:
        if self.validate_with_ema and self._ema is not None:
            self._raw_weights = [t.clone() for t in self._tensors(self._model)]
            _copy_into(self._tensors(self._model), self._tensors(self._ema.module))

    def before_epoch(self, epoch: int) -> None:
        self._restore_raw_weights()  # the average validated last epoch made way for the weights that train

    def after_fit(self, logs: dict[str, float]) -> None:
        # The last epoch's average (or that of a validation that raised) makes way for the model's own weights.
        self._restore_raw_weights()
        if self.apply_at_end and self._ema is not None:
            _copy_into(self._tensors(self._model), self._tensors(self._ema.module))

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The average (CPU tensors by state-dict name), the update count and the settings.

        Example:
            >>> averaged = ema.state_dict()["weights"]  # doctest: +SKIP
        """
        if self._ema is None:
            return {} if self._pending is None else dict(self._pending)
        weights = {name: t.detach().to("cpu", copy=True) for name, t in self._ema.module.state_dict().items()}
        state = {"decay": self.decay, "warmup": self.warmup, "updates": self.updates, "weights": weights}
        if self._raw_weights is not None and self._model is not None:
            # Between validation and the next epoch the model holds the average: keep its own weights.
            names = list(self._model.state_dict())
            state["raw_weights"] = {name: t.detach().to("cpu", copy=True)
                                    for name, t in zip(names, self._raw_weights, strict=True)}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the average saved by `state_dict`; its decay and warmup replace this one's.

        Works before the fit (the average is then restored when the fit starts) and during it.
        """
        if not state:
            return
        if self._ema is None:
            self._pending = dict(state)
        else:
            self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        assert self._ema is not None
        current = self._ema.module.state_dict()
        saved = state["weights"]
        if set(saved) != set(current):
            missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
            raise ValueError(
                f"The EMA state does not match the model: it lacks {missing[:3]} and has extra {extra[:3]}. "
                "Load a state saved from a fit of the same architecture and number of classes."
            )
        with torch.no_grad():
            for name, tensor in current.items():
                tensor.copy_(saved[name])
        self.decay, self.warmup, self.updates = float(state["decay"]), bool(state["warmup"]), int(state["updates"])
        self._ema.decay, self._ema.use_warmup = self.decay, self.warmup
        raw = state.get("raw_weights")
        if raw is not None and self._model is not None:
            # Saved between a validation and the next epoch: the model was loaded with the average it
            # held then; its own weights come back when the next epoch starts, as they would have.
            model_state = self._model.state_dict()
            self._raw_weights = [raw[name].to(tensor.device, tensor.dtype) for name, tensor in model_state.items()]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _tensors(module: nn.Module | None) -> list[torch.Tensor]:
        # The state dict's tensors share storage with the parameters and buffers: copy_ into them
        # changes the model in place, keeping its memory format (channels_last) and its optimizer.
        assert module is not None
        return list(module.state_dict().values())

    def _restore_raw_weights(self) -> None:
        if self._raw_weights is not None:
            _copy_into(self._tensors(self._model), self._raw_weights)
            self._raw_weights = None


@torch.no_grad()
def _copy_into(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)
