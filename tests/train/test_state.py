"""Learner.state_dict / load_state_dict, the one serialiser: round trips, checkpoints and exact resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unfreeze.train.callbacks import Callback, EarlyStopping
from unfreeze.train.checkpoint import CheckpointError, read_checkpoint
from unfreeze.train.learner import STATE_KEYS


def weights(learn) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in learn.model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


class CrashAtEpoch(Callback):
    """Raises at the start of the n-th epoch this callback sees (0-based), as a crash would."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def before_epoch(self, epoch: int) -> None:
        if self.seen == self.n:
            raise RuntimeError("simulated crash")
        self.seen += 1


def test_a_saved_state_brings_the_learner_back_and_training_continues_identically(tiny_learner) -> None:
    learn = tiny_learner()
    learn.unfreeze()
    learn.fit_one_cycle(1, 1e-3)
    state = learn.state_dict()
    learn.fit_one_cycle(2, 1e-3)
    after_two = (weights(learn), list(learn.recorder.losses))
    learn.fit_one_cycle(1, 1e-2)  # wander off
    learn.load_state_dict(state)
    assert len(learn.recorder.history) == 1 and learn.step == 4
    learn.fit_one_cycle(2, 1e-3)
    assert same(weights(learn), after_two[0]) and learn.recorder.losses == after_two[1]


def test_the_state_is_a_copy_and_sections_can_be_chosen(tiny_learner) -> None:
    learn = tiny_learner()
    learn.fit(1, 1e-3)
    state = learn.state_dict()
    assert set(STATE_KEYS) <= set(state) and "grads" not in state
    before = state["model"]["head.0.weight"].clone()
    learn.fit(1, 1e-2)
    assert torch.equal(state["model"]["head.0.weight"], before)  # later training did not change it
    assert set(learn.state_dict(keys=["model", "freeze"])) == {"format", "model", "freeze"}
    with pytest.raises(ValueError, match="Unknown state sections"):
        learn.state_dict(keys=["weights"])


def test_a_partial_state_loads_only_its_sections(tiny_learner) -> None:
    learn = tiny_learner()
    learn.fit(1, 1e-3)
    model_only = learn.state_dict(keys=["model"])
    history = list(learn.recorder.history)
    learn.fit(1, 1e-2)
    learn.load_state_dict(model_only)
    assert same(weights(learn), model_only["model"])
    assert len(learn.recorder.history) == len(history) + 1  # the recorder section was not in it


def test_checkpoints_are_weights_only_and_carry_callback_state(tiny_learner, tmp_path: Path) -> None:
    learn = tiny_learner()
    stopper = EarlyStopping(patience=5)
    learn.fit(2, 1e-3, callbacks=[stopper], checkpoint=tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["callbacks"]["0:EarlyStopping"] == {"best": stopper.best, "wait": stopper.wait}
    assert state["progress"]["epoch"] == 1 and state["progress"]["n_epoch"] == 2
    assert state["progress"]["schedule"]["kind"] == "constant"


# crash_at 1: in the frozen phase; 2: at the phase change; 3: in the unfrozen phase. Without a learner
# seed, dropout draws from the global RNG: the checkpoint's RNG state must carry it.
@pytest.mark.parametrize(("crash_at", "seed"), [(1, 0), (2, 0), (3, 0), (3, None)])
def test_fine_tune_resumes_exactly_from_any_epoch(tiny_learner, tmp_path: Path, crash_at: int,
                                                  seed: int | None) -> None:
    torch.manual_seed(7)
    reference = tiny_learner(seed=seed)
    reference.fine_tune(2, freeze_epochs=2)
    checkpoint = tmp_path / "ckpt.pt"
    torch.manual_seed(7)
    crashed = tiny_learner(seed=seed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fine_tune(2, freeze_epochs=2, checkpoint=checkpoint, callbacks=[CrashAtEpoch(crash_at)])
    torch.manual_seed(123)  # a fresh process: its global RNG is anywhere
    resumed = tiny_learner(seed=seed)
    resumed.fine_tune(2, freeze_epochs=2, checkpoint=checkpoint, resume=checkpoint)
    assert same(weights(resumed), weights(reference))
    assert resumed.recorder.losses == reference.recorder.losses
    assert [row["valid_loss"] for row in resumed.recorder.history] == [
        row["valid_loss"] for row in reference.recorder.history]
    assert resumed.step == reference.step and resumed.frozen_to == reference.frozen_to == 0


def test_a_resumed_callback_continues_with_its_state(tiny_learner, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    learn = tiny_learner()
    with pytest.raises(RuntimeError):
        learn.fit(3, 1e-3, checkpoint=checkpoint, callbacks=[EarlyStopping(patience=9), CrashAtEpoch(2)])
    saved = read_checkpoint(checkpoint)["callbacks"]["0:EarlyStopping"]
    stopper = EarlyStopping(patience=9)
    tiny_learner().fit(3, 1e-3, checkpoint=checkpoint, resume=checkpoint, callbacks=[stopper, CrashAtEpoch(99)])
    assert stopper.best is not None and stopper.best <= saved["best"]


def test_resuming_a_different_fit_is_refused_naming_both_values(tiny_learner, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    learn = tiny_learner()
    with pytest.raises(RuntimeError):
        learn.fit_one_cycle(3, 1e-3, checkpoint=checkpoint, callbacks=[CrashAtEpoch(1)])
    with pytest.raises(CheckpointError, match="n_epoch=3 there, 5 now"):
        tiny_learner().fit_one_cycle(5, 1e-3, resume=checkpoint)
    with pytest.raises(CheckpointError, match="lr_max"):
        tiny_learner().fit_one_cycle(3, 2e-3, resume=checkpoint)
    crashed = tiny_learner()
    with pytest.raises(RuntimeError):
        crashed.fine_tune(2, checkpoint=checkpoint, callbacks=[CrashAtEpoch(1)])
    with pytest.raises(CheckpointError, match="epochs=2 there, 4 now"):
        tiny_learner().fine_tune(4, resume=checkpoint)


def test_an_unreadable_or_foreign_checkpoint_is_refused(tiny_learner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable unfreeze checkpoint"):
        tiny_learner().fit(1, 1e-3, resume=junk)
    with pytest.raises(CheckpointError, match="No checkpoint"):
        tiny_learner().fit(1, 1e-3, resume=tmp_path / "missing.pt")
