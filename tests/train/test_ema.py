"""EMA of the weights: parity with the hand-computed average, validation with the average and an
exact restore, frozen parameters, resuming from state_dict."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from unfreeze import EMA, Callback


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class Probe(Callback):
    """Records the model's weights after each step, at validation, and at the end of each epoch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []
        self.after_epochs: list[dict[str, torch.Tensor]] = []
        self.channels_last: list[bool] = []

    def before_fit(self, learner) -> None:
        self.model = learner.model

    def after_batch(self, step, logs) -> None:
        self.steps.append(state(self.model))

    def before_validate(self, epoch) -> None:
        self.validated.append(state(self.model))

    def after_epoch(self, epoch, logs) -> None:
        self.after_epochs.append(state(self.model))
        self.channels_last.append(self.model.body[0].weight.is_contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_matches_the_hand_computed_average_over_three_steps(tiny_learner, warmup):
    learn = tiny_learner(n_train=48, batch_size=16)  # 3 steps
    ema, probe = EMA(decay=0.5, warmup=warmup, validate_with_ema=False, apply_at_end=False), Probe()
    learn.fit(1, 1e-2, callbacks=[ema, probe])

    expected = dict(probe.steps[0])  # the first update copies the weights
    for k, weights in enumerate(probe.steps[1:], start=2):
        decay = min(0.5, 1 - k ** (-2 / 3)) if warmup else 0.5
        for name, value in weights.items():
            floating = value.is_floating_point()
            expected[name] = decay * expected[name] + (1 - decay) * value if floating else value
    averaged = ema.state_dict()["weights"]
    assert ema.updates == 3
    for name in expected:
        torch.testing.assert_close(averaged[name], expected[name], rtol=1e-6, atol=1e-7)
    # Not trivially the last weights: the average lags behind them.
    assert not torch.equal(averaged["head.3.weight"], probe.steps[-1]["head.3.weight"])


def test_validation_sees_the_average_and_the_weights_come_back_bit_for_bit(tiny_learner):
    learn, twin = tiny_learner(), tiny_learner()
    raw, ema, seen = Probe(), EMA(decay=0.8, warmup=False), Probe()
    rows = learn.fit(2, 1e-2, callbacks=[raw, ema, seen])  # raw sees the model before the swap

    for epoch in range(2):
        assert not torch.equal(raw.validated[epoch]["head.3.weight"], seen.validated[epoch]["head.3.weight"])
        # The end of the epoch still holds the average that was scored (what KeepBest saves)...
        assert_equal_states(seen.after_epochs[epoch], seen.validated[epoch])
        assert seen.channels_last[epoch]
    # ...and the next epoch trains from the model's own weights, bit for bit: a twin that never
    # validated with the average took exactly the same steps.
    twin_steps = Probe()
    twin.fit(2, 1e-2, callbacks=[EMA(decay=0.8, warmup=False, validate_with_ema=False), twin_steps])
    for mine, theirs in zip(raw.steps, twin_steps.steps, strict=True):
        assert_equal_states(mine, theirs)
    # apply_at_end: the model now holds the average the last row was validated with.
    assert_equal_states(state(learn.model), seen.validated[-1])
    assert_equal_states(state(learn.model), ema.state_dict()["weights"])
    assert learn.validate()["valid_loss"] == pytest.approx(rows[-1]["valid_loss"], rel=1e-6)


def test_a_failing_validation_still_gives_the_model_its_own_weights_back(tiny_learner):
    def broken_metric(logits: torch.Tensor, targets: torch.Tensor) -> float:
        raise RuntimeError("metric failed")

    learn = tiny_learner(metrics=[broken_metric])
    raw = Probe()
    with pytest.raises(RuntimeError, match="metric failed"):
        learn.fit(1, 1e-2, callbacks=[raw, EMA(decay=0.8, warmup=False, apply_at_end=False)])
    assert_equal_states(state(learn.model), raw.validated[0])


def test_decay_zero_makes_the_average_the_weights_buffers_included(tiny_learner):
    learn = tiny_learner()
    ema = EMA(decay=0.0, apply_at_end=False)
    learn.fit(1, 1e-2, callbacks=[ema])
    assert_equal_states(ema.state_dict()["weights"], state(learn.model))
    assert int(ema.state_dict()["weights"]["body.1.num_batches_tracked"]) == len(learn.dls.train)


def test_frozen_parameters_stay_exactly_as_they_were(tiny_learner):
    learn = tiny_learner()
    learn.freeze()
    before = state(learn.model)
    ema = EMA(decay=0.9, warmup=False, apply_at_end=False)
    learn.fit(1, 1e-2, callbacks=[ema])
    averaged = ema.state_dict()["weights"]
    for name in ("body.0.weight", "body.3.weight"):  # frozen convolutions
        assert torch.equal(averaged[name], before[name])
    assert not torch.equal(averaged["body.1.running_mean"], before["body.1.running_mean"])  # buffers average
    assert not torch.equal(averaged["head.0.weight"], learn.model.head[0].weight)


def test_state_dict_round_trip_continues_the_average_exactly(tiny_learner):
    # One learner runs two fits with one EMA; its twin stops after the first, saves the EMA like a
    # checkpoint does, and continues with a fresh EMA loaded from it.
    learn, twin = tiny_learner(), tiny_learner()
    ema = EMA(decay=0.9)
    learn.fit(1, 1e-2, callbacks=[ema])
    learn.fit(1, 1e-2, callbacks=[ema])

    first = EMA(decay=0.9)
    twin.fit(1, 1e-2, callbacks=[first])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    json.dumps({k: v for k, v in saved.items() if k != "weights"})  # the rest is plain JSON
    resumed = EMA(decay=0.5, warmup=False)  # the saved settings win, as in torch's schedulers
    resumed.load_state_dict(saved)
    twin.fit(1, 1e-2, callbacks=[resumed])

    assert resumed.updates == ema.updates == 2 * len(learn.dls.train)
    assert (resumed.decay, resumed.warmup) == (0.9, True)
    assert_equal_states(resumed.state_dict()["weights"], ema.state_dict()["weights"])
    assert_equal_states(state(twin.model), state(learn.model))


def test_bad_decay_and_mismatched_state_are_refused(tiny_learner):
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\]"):
        EMA(decay=1.5)
    learn = tiny_learner()
    ema = EMA()
    learn.fit(1, 1e-2, callbacks=[ema])
    saved = ema.state_dict()
    del saved["weights"]["head.3.bias"]
    with pytest.raises(ValueError, match=r"lacks \['head.3.bias'\]"):
        ema.load_state_dict(saved)


class Scores(Callback):
    """Records each epoch's validation loss and the weights the model held when it was scored."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.scored: list[dict[str, torch.Tensor]] = []

    def before_fit(self, learner) -> None:
        self.model = learner.model

    def after_validate(self, epoch, logs) -> None:
        self.losses.append(logs["valid_loss"])
        self.scored.append(state(self.model))


def test_keep_best_keeps_the_average_that_scored_best(tiny_learner):
    from unfreeze import KeepBest

    learn = tiny_learner()
    ema, scores, best = EMA(decay=0.9, warmup=False), Scores(), KeepBest(monitor="valid_loss")
    learn.fit_one_cycle(4, 5e-2, callbacks=[ema, scores, best])
    best_epoch = min(range(4), key=lambda epoch: scores.losses[epoch])
    assert best.best_epoch == best_epoch
    assert_equal_states(state(learn.model), scores.scored[best_epoch])
    assert learn.validate()["valid_loss"] == pytest.approx(scores.losses[best_epoch], rel=1e-6)


def test_a_resume_between_epochs_continues_from_the_models_own_weights(tiny_learner, tmp_path):
    import shutil

    straight, resumed = tiny_learner(), tiny_learner()
    path, copy = tmp_path / "checkpoint.pt", tmp_path / "after_epoch_1.pt"

    class KeepFirstCheckpoint(Callback):
        """Copies the checkpoint written after epoch 1 (the model then holds the average) aside."""

        def before_epoch(self, epoch) -> None:
            if epoch == 1:
                shutil.copy(path, copy)

    straight.fit(3, 1e-2, callbacks=[EMA(decay=0.8, warmup=False), KeepFirstCheckpoint()], checkpoint=path)
    saved = torch.load(copy, weights_only=True)["callbacks"]
    assert any("raw_weights" in section for section in saved.values())  # the model held the average
    resumed.fit(3, 1e-2, callbacks=[EMA(decay=0.8, warmup=False), KeepFirstCheckpoint()], resume=copy)
    assert_equal_states(state(resumed.model), state(straight.model))
