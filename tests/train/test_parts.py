"""The parts the Learner is composed of, each on its own: groups, stepper, fit progress, fastai resolvers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from unfreeze.train import fastai_idioms
from unfreeze.train.callbacks import Callback
from unfreeze.train.checkpoint import CheckpointError, read_checkpoint
from unfreeze.train.groups import ParamGroups
from unfreeze.train.recipes import FitPlan, FitProgress, Resume
from unfreeze.train.stepper import Stepper


@pytest.fixture
def model(tiny_learner) -> nn.Module:
    """The tiny model of the train fakes (backbone contract: three groups, BN in the body and the head)."""
    return tiny_learner().model



def test_groups_freeze_and_restore_their_own_section(model) -> None:
    groups = ParamGroups(model, train_bn=False)
    groups.freeze_to(-1)
    head = set(groups.groups[-1])
    assert groups.frozen_to == 2
    assert {name for name, p in groups.params.items() if p.requires_grad} == head  # no norm layer trains
    saved = groups.state_dict()
    groups.freeze_to(0)
    assert all(p.requires_grad for p in groups.params.values())
    groups.load_state_dict(saved)
    assert groups.frozen_to == 2 and not groups.train_bn
    assert {name for name, p in groups.params.items() if p.requires_grad} == head


def test_groups_keep_body_norm_layers_in_eval_without_train_bn(model) -> None:
    ParamGroups(model, train_bn=False).set_train_mode()
    assert [m.training for m in model.body if isinstance(m, nn.BatchNorm2d)] == [False, False]
    assert model.head[1].training  # the new head's norm layer trains


def test_groups_refuse_a_model_whose_groups_miss_a_parameter(model) -> None:
    model.extra = nn.Linear(2, 2)  # not in param_groups
    with pytest.raises(ValueError, match="miss 2 parameters"):
        ParamGroups(model)


def test_stepper_owns_the_optimizer_and_its_sections(model) -> None:
    torch.manual_seed(0)
    groups = ParamGroups(model)
    stepper = Stepper(model, groups, nn.CrossEntropyLoss(), torch.device("cpu"), weight_decay=0.1)
    assert stepper.optimizer is None and not stepper.overlap_steps and stepper.amp_dtype is None
    stepper.set_hyper([1e-3, 1e-3, 1e-2], 0.9)
    # One decayed and one undecayed torch group per layer group that has both kinds of parameters.
    decays = {(g["layer_group"], g["weight_decay"]) for g in stepper.optimizer.param_groups}
    assert (2, 0.1) in decays and (2, 0.0) in decays
    loss = stepper.train_step(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    saved = stepper.state_dict()
    assert saved["scaler"] is None and saved["optimizer"]["state"]
    with stepper.weight_decay_for_fit(0.5):
        assert {g["weight_decay"] for g in stepper.optimizer.param_groups} == {0.0, 0.5}
    assert stepper.weight_decay == 0.1
    stepper.reset_optimizer()
    stepper.load_state_dict(saved)
    assert stepper.optimizer is not None and stepper.optimizer.state_dict()["state"].keys() == saved["optimizer"][
        "state"].keys()


def test_stepper_refuses_unknown_options(model) -> None:
    with pytest.raises(ValueError, match="'adamw', 'sgd', 'ranger'"):
        Stepper(model, ParamGroups(model), nn.CrossEntropyLoss(), torch.device("cpu"), optimizer="adam")
    with pytest.raises(ValueError, match="grad_accum"):
        Stepper(model, ParamGroups(model), nn.CrossEntropyLoss(), torch.device("cpu"), grad_accum=0)


def test_fit_progress_round_trips_through_its_section() -> None:
    progress = FitProgress()
    assert progress.state_dict() == {} and progress.recipe == {}
    plan = FitPlan(3, {"kind": "constant", "lrs": [1e-3]}, {"name": "fine_tune", "phase": 1}, None, {"seed": 0})
    progress.start(plan)
    progress.reached(1, finished=False)
    state = progress.state_dict()
    assert state == {**plan.to_dict(), "epoch": 1}
    again = FitProgress()
    again.load_state_dict(state)
    assert again == progress and again.recipe["phase"] == 1
    again.load_state_dict({})
    assert again.plan is None


def test_a_plan_refuses_the_checkpoint_of_another_fit_naming_the_values() -> None:
    plan = FitPlan(3, {"kind": "constant", "lrs": [1e-3]})
    plan.check_resumes({**plan.to_dict(), "epoch": 0}, "ckpt.pt")  # the same fit: accepted
    other = {**plan.to_dict(), "n_epoch": 5}
    with pytest.raises(CheckpointError, match=r"n_epoch=5 there, 3 now"):
        plan.check_resumes(other, "ckpt.pt")


def test_a_resume_applies_the_checkpoint_once(tiny_learner, tmp_path: Path) -> None:
    learn = tiny_learner()
    learn.fit(1, 1e-3, checkpoint=tmp_path / "ckpt.pt")
    resume = Resume.read(tmp_path / "ckpt.pt")
    assert resume.progress["finished"] and resume.progress["epoch"] == 0
    fresh = tiny_learner()
    resume.apply(fresh)
    assert fresh.epochs_done == 1 and resume.applied
    fresh.recorder.history.clear()
    resume.apply(fresh)  # applied already: nothing loaded again
    assert fresh.epochs_done == 0


def test_fastai_aliases_resolve_in_one_place(tmp_path: Path) -> None:
    assert fastai_idioms.weight_decay_or_wd(None, 0.1) == 0.1
    with pytest.raises(ValueError, match="wd is fastai's spelling of weight_decay"):
        fastai_idioms.weight_decay_or_wd(0.2, 0.1)
    assert fastai_idioms.export_target(tmp_path, None, "stage.pkl") == tmp_path / "stage.unfreeze"
    assert fastai_idioms.export_target(tmp_path, "out/model.unfreeze", None) == Path("out/model.unfreeze")
    assert str(fastai_idioms.learner_device(None, True)) == "cpu"
    with pytest.raises(ValueError, match="disagree"):
        fastai_idioms.learner_device("cpu", False)
    (tmp_path / "export.unfreeze").write_bytes(b"")
    assert fastai_idioms.export_file(tmp_path / "export.pkl") == tmp_path / "export.unfreeze"


def test_param_groups_of_a_plain_module_are_the_given_one_group():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = ParamGroups(model, groups=fastai_idioms.plain_module_groups(model))
    groups.freeze_to(-1)

    assert groups.n_groups == 1 and groups.groups == [[name for name, _ in model.named_parameters()]]
    assert groups.frozen_to == 0 and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="miss 1 parameters"):
        ParamGroups(model, groups=[[name for name, _ in model.named_parameters()][1:]])


def test_a_training_step_counts_its_write_to_the_weights(model) -> None:
    # The folded batch norms' cache reads each tensor's version: an optimizer that wrote the weights
    # without counting the write (torch's fused CPU AdamW does) would let validation see the old ones.
    groups = ParamGroups(model)
    stepper = Stepper(model, groups, nn.CrossEntropyLoss(), torch.device("cpu"))
    stepper.set_hyper([1e-2] * groups.n_groups, 0.9)
    trained = [p for p in model.parameters() if p.requires_grad]
    versions = [p._version for p in trained]
    stepper.train_step(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert all(p._version > v for p, v in zip(trained, versions, strict=True))


def test_a_callback_failing_after_an_epoch_leaves_that_epochs_checkpoint(tiny_learner, tmp_path: Path) -> None:
    # The exception ends the fit, but the epoch it followed is trained: its checkpoint must be written.
    class FailsAfterSecondEpoch(Callback):
        def after_epoch(self, epoch: int, logs: dict) -> None:
            if epoch == 1:
                raise OSError("No space left on device (a logger)")

    class Seen(Callback):  # after the failing one: it must still see the epoch (KeepBest would)
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[int] = []

        def after_epoch(self, epoch: int, logs: dict) -> None:
            self.epochs.append(epoch)

    learn, seen = tiny_learner(), Seen()
    with pytest.raises(OSError, match="No space left"):
        learn.fit(3, 1e-3, callbacks=[FailsAfterSecondEpoch(), seen], checkpoint=tmp_path / "ckpt.pt")
    assert seen.epochs == [0, 1]
    state = read_checkpoint(tmp_path / "ckpt.pt")
    assert len(state["recorder"]["history"]) == 2
    fresh = tiny_learner()
    fresh.fit(3, 1e-3, checkpoint=tmp_path / "ckpt.pt", resume=tmp_path / "ckpt.pt")
    assert [row["epoch"] for row in fresh.recorder.history] == [0, 1, 2]


def test_an_optimizer_state_saved_unfused_goes_on_fused(model) -> None:
    # Checkpoints written before the CPU step was fused carry fused=None in their groups, which torch's
    # load_state_dict would keep: the resumed fit would run slower and with other rounding.
    groups = ParamGroups(model)
    stepper = Stepper(model, groups, nn.CrossEntropyLoss(), torch.device("cpu"))
    stepper.set_hyper([1e-2] * groups.n_groups, 0.9)
    batch = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    stepper.train_step(*batch)
    state = stepper.state_dict()
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None
    stepper.load_state_dict(state)
    assert all(group["fused"] is True for group in stepper.ensure_optimizer().param_groups)
    stepper.train_step(*batch)  # the loaded moments and steps suit the fused kernel
    assert all(float(s["step"]) == 2 for s in stepper.ensure_optimizer().state.values())


def test_a_torch_without_the_fused_kernel_trains_with_the_loop(model, monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.optim.AdamW

    def without_fused(params, *args, fused=None, **kwargs):  # as torch before the fused CPU kernel refuses it:
        if fused:  # after its Optimizer.__init__ wrote the defaults into the groups it was given
            for group in params:
                group.setdefault("fused", True)
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported "
                               "devices: ['cuda', 'xpu', 'privateuseone']")
        return real(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", without_fused)
    groups = ParamGroups(model)
    stepper = Stepper(model, groups, nn.CrossEntropyLoss(), torch.device("cpu"))
    stepper.set_hyper([1e-2] * groups.n_groups, 0.9)
    stepper.train_step(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert not any(group.get("fused") for group in stepper.ensure_optimizer().param_groups)
