"""Resumable checkpoints: an interrupted fit resumed from its checkpoint equals an uninterrupted fit."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unfreeze.train.callbacks import Callback
from unfreeze.train.checkpoint import CheckpointError, load_checkpoint
from unfreeze.train.learner import Learner


class InterruptAtEpoch(Callback):
    """Raises KeyboardInterrupt (Ctrl-C) when `epoch` starts, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def before_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


class Payload:
    """Unpickling this creates a marker folder: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def make_learner(make_image_folder: Callable[..., Path],
                 tiny_learner_factory: Callable[..., Learner]) -> Callable[[], Learner]:
    root = make_image_folder(classes=("cat", "dog", "fox"), n_train=4, n_valid=2)

    def make() -> Learner:
        # Unfrozen, so that the body's weights, BN statistics and optimizer state all have to resume.
        learn = tiny_learner_factory(root, size=16, bs=6)
        learn.unfreeze()
        return learn

    return make


def weights(learn: Learner) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in learn.model.state_dict().items()}


def test_interrupted_then_resumed_fit_equals_uninterrupted_fit(make_learner: Callable[[], Learner],
                                                              tmp_path: Path) -> None:
    reference = make_learner()
    reference.fit_one_cycle(2, 1e-2)
    expected = weights(reference)

    checkpoint = tmp_path / "run" / "ckpt.pt"
    interrupted = make_learner()
    interrupted.fit_one_cycle(2, 1e-2, checkpoint=checkpoint, callbacks=[InterruptAtEpoch(1)])
    assert interrupted.interrupted and checkpoint.is_file() and len(interrupted.recorder.history) == 1
    assert any(not torch.equal(expected[name], value) for name, value in weights(interrupted).items())

    resumed = make_learner()  # a new process would build the same learner from the same seed
    resumed.fit_one_cycle(2, 1e-2, resume=checkpoint)
    assert not resumed.interrupted and len(resumed.recorder.history) == 2
    assert resumed.step == reference.step
    for name, value in weights(resumed).items():
        assert torch.equal(value, expected[name]), f"{name} differs after resuming"
    assert [row["train_loss"] for row in resumed.recorder.history] == [
        row["train_loss"] for row in reference.recorder.history
    ]


def test_checkpoint_loads_with_weights_only(make_learner: Callable[[], Learner], tmp_path: Path) -> None:
    learn = make_learner()
    path = learn.save_checkpoint(tmp_path / "ckpt.pt")
    state = torch.load(path, weights_only=True)  # raises if anything but plain data was pickled
    assert state["format"] == 2 and "model" in state and "optimizer" in state


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoint_with_code_in_it_is_refused_without_running(make_learner: Callable[[], Learner],
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    for index, save in enumerate((
        lambda path: torch.save({"format": 1, "model": Payload(marker)}, path),
        lambda path: path.write_bytes(pickle.dumps({"format": 1, "model": Payload(marker)})),
    )):
        path = tmp_path / f"evil{index}.pt"
        save(path)
        with pytest.raises(CheckpointError, match="not a readable unfreeze checkpoint"):
            load_checkpoint(make_learner(), path)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(make_learner: Callable[[], Learner], tmp_path: Path) -> None:
    learn = make_learner()
    path = learn.save_checkpoint(tmp_path / "ckpt.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(learn, path)
