"""The Learner: event order, freezing, schedules inside the loop, bad input, NaN, Ctrl-C, determinism."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from unfreeze._device import cudnn_autotune
from unfreeze.data import ImageDataLoaders
from unfreeze.models import UnknownArchitectureError
from unfreeze.train.builders import cnn_learner, vision_learner
from unfreeze.train.callbacks import Callback, CSVLogger, EarlyStopping, ProgressCallback, SaveBestModel
from unfreeze.train.learner import Learner, NonFiniteLossError
from unfreeze.train.schedules import OneCycleSchedule, resolve_lrs


@pytest.fixture
def dls(make_image_folder):
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)
    return ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)


def make_learner(dls, arch="test_resnet", **kwargs):
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("seed", 0)
    return vision_learner(dls, arch, metrics=["error_rate", "accuracy"], pretrained=False, **kwargs)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class EventLog(Callback):
    def __init__(self):
        self.events = []

    def before_fit(self, learner):
        self.events.append("before_fit")

    def before_epoch(self, epoch):
        self.events.append(f"before_epoch:{epoch}")

    def before_batch(self, step):
        self.events.append("before_batch")

    def after_batch(self, step, logs):
        self.events.append("after_batch")

    def before_validate(self, epoch):
        self.events.append(f"before_validate:{epoch}")

    def after_validate(self, epoch, logs):
        self.events.append(f"after_validate:{epoch}:{sorted(logs)}")

    def after_epoch(self, epoch, logs):
        self.events.append(f"after_epoch:{epoch}")

    def after_fit(self, logs):
        self.events.append("after_fit")


def test_event_order(dls):
    learn = make_learner(dls)
    log = EventLog()
    learn.fit(2, 1e-3, callbacks=[log])
    per_epoch = ["before_batch", "after_batch"] * len(dls.train)
    valid = sorted(["valid_loss", *learn.metric_names])
    assert log.events == [
        "before_fit",
        "before_epoch:0", *per_epoch, "before_validate:0", f"after_validate:0:{valid}", "after_epoch:0",
        "before_epoch:1", *per_epoch, "before_validate:1", f"after_validate:1:{valid}", "after_epoch:1",
        "after_fit",
    ]


def test_vision_learner_freezes_a_pretrained_body_and_cnn_alias(dls, tmp_path):
    # A pretrained body (here weights from a file) is frozen; see the next test for pretrained=False.
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet").state_dict(), str(weights))
    learn = vision_learner(dls, "test_resnet", weights=weights, train_bn=True, quiet=True, seed=0)
    assert learn.frozen_to == learn.n_groups - 1 == 2
    assert cnn_learner is vision_learner
    head = set(learn.param_groups[-1])
    norm = {
        f"{module_name}.{param_name}"
        for module_name, module in learn.model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param_name, _ in module.named_parameters(recurse=False)
    }
    assert norm - head
    for name, param in learn.model.named_parameters():
        assert param.requires_grad == (name in head or name in norm), name


def test_vision_learner_without_pretrained_weights_trains_every_layer(dls):
    # fastai: random weights have nothing to protect, so the learner starts unfrozen.
    learn = make_learner(dls)
    assert learn.frozen_to == 0
    assert all(param.requires_grad for param in learn.model.parameters())


@pytest.mark.parametrize("n", [0, 1, 2, -1, -2])
def test_freeze_to_matches_fastai(dls, n):
    learn = make_learner(dls, train_bn=False)
    learn.freeze_to(n)
    first_trainable = n % learn.n_groups if n < 0 else n
    for index, names in enumerate(learn.param_groups):
        for name in names:
            assert learn.groups.params[name].requires_grad == (index >= first_trainable)


def test_freezing_every_group_warns_as_fastai_does(dls):
    # fastai warns "whole model is frozen"; silently, a fit would then train nothing but norm layers.
    learn = make_learner(dls, train_bn=False)
    with pytest.warns(UserWarning, match=rf"all {learn.n_groups} groups.*head too.*freeze_to\(-1\)"):
        learn.freeze_to(learn.n_groups)
    assert not any(param.requires_grad for param in learn.model.parameters())


def test_freeze_clears_optimizer_state(dls):
    learn = make_learner(dls)
    learn.fit(1, 1e-3)
    assert learn.optimizer is not None and len(learn.optimizer.state) > 0
    learn.unfreeze()
    assert learn.optimizer is None


@pytest.mark.parametrize("train_bn", [True, False])
def test_frozen_parameters_do_not_change_by_one_bit(dls, train_bn):
    learn = make_learner(dls, train_bn=train_bn)
    learn.freeze()  # pretrained=False starts unfrozen
    before = state(learn.model)
    learn.fit_one_cycle(2, 1e-2)
    after = learn.model.state_dict()
    norm_prefixes = tuple(
        f"{name}." for name, module in learn.model.body.named_modules(prefix="body")
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    )
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("head.") for k in changed), "the head must train"
    for key in changed:
        if key.startswith("head."):
            continue
        # Only norm layers of frozen groups may change, and only with train_bn=True (fastai).
        assert train_bn and key.startswith(norm_prefixes), key


def test_frozen_body_with_frozen_bn_gets_no_gradient(dls):
    learn = make_learner(dls, train_bn=False)
    learn.freeze()  # pretrained=False starts unfrozen
    learn.ensure_optimizer()
    learn.set_train_mode()
    images, labels = next(iter(dls.train))
    body_out = []
    handle = learn.model.body.register_forward_hook(lambda m, i, o: body_out.append(o))
    learn.train_step(images, labels)
    handle.remove()
    assert not body_out[0].requires_grad, "autograd must not record the body"
    assert all(p.grad is None for p in learn.model.body.parameters())


def test_one_cycle_lrs_inside_the_loop(dls):
    learn = make_learner(dls)
    learn.unfreeze()
    learn.fit_one_cycle(2, slice(1e-5, 1e-3))
    steps = 2 * len(dls.train)
    expected = OneCycleSchedule(resolve_lrs(slice(1e-5, 1e-3), 3), steps)
    assert len(learn.recorder.lrs) == steps
    for step, lrs in enumerate(learn.recorder.lrs):
        assert lrs == pytest.approx(expected.lrs_at(step))
        assert learn.recorder.moms[step] == pytest.approx(expected.mom_at(step))
    # The optimizer saw the head LR in its head groups and beta1 as the cycled momentum.
    head_groups = [g for g in learn.optimizer.param_groups if g["layer_group"] == 2]
    assert head_groups[0]["lr"] == pytest.approx(expected.lrs_at(steps - 1)[2])
    assert head_groups[0]["betas"] == (pytest.approx(expected.mom_at(steps - 1)), 0.99)


def test_fine_tune_phases_match_fastai(dls):
    learn = make_learner(dls)
    learn.fine_tune(1, base_lr=2e-3, freeze_epochs=1, lr_mult=100)
    n = len(dls.train)
    frozen = OneCycleSchedule(resolve_lrs(slice(2e-3), 3), n, pct_start=0.99)
    unfrozen = OneCycleSchedule(resolve_lrs(slice(1e-3 / 100, 1e-3), 3), n, pct_start=0.3, div=5.0)
    for step in range(n):
        assert learn.recorder.lrs[step] == pytest.approx(frozen.lrs_at(step))
        assert learn.recorder.lrs[n + step] == pytest.approx(unfrozen.lrs_at(step))
    assert learn.recorder.phase_starts == [0, n]
    assert learn.frozen_to == 0
    assert [row["epoch"] for row in learn.recorder.history] == [0, 1]


def test_fine_tune_and_fit_one_cycle_take_fastais_div_final_and_moms(dls):
    """fastai's fine_tune(1, div_final=1e4, moms=(.9, .8, .9)) passes both to both phases; it was a TypeError."""
    learn = make_learner(dls)
    learn.fine_tune(1, base_lr=2e-3, div_final=1e4, moms=(0.9, 0.8, 0.9))
    n = len(dls.train)
    frozen = OneCycleSchedule(resolve_lrs(slice(2e-3), 3), n, pct_start=0.99, div_final=1e4, moms=(0.9, 0.8, 0.9))
    unfrozen = OneCycleSchedule(resolve_lrs(slice(1e-3 / 100, 1e-3), 3), n, pct_start=0.3, div=5.0, div_final=1e4,
                                moms=(0.9, 0.8, 0.9))
    for step in range(n):
        assert learn.recorder.lrs[step] == pytest.approx(frozen.lrs_at(step))
        assert learn.recorder.moms[step] == pytest.approx(frozen.mom_at(step))
        assert learn.recorder.lrs[n + step] == pytest.approx(unfrozen.lrs_at(step))
        assert learn.recorder.moms[n + step] == pytest.approx(unfrozen.mom_at(step))
    learn.fit_one_cycle(1, 1e-3, moms=None, reset_opt=True)  # fastai's moms=None: the default curve
    assert learn.recorder.moms[-n:] == pytest.approx([OneCycleSchedule([1e-3], n).mom_at(i) for i in range(n)])
    with pytest.raises(ValueError, match=r"base_lr=0\.001"):
        learn.fine_tune(1, lr_max=1e-3)
    with pytest.raises(ValueError, match="resume="):
        learn.fine_tune(1, start_epoch=1)


def test_fit_takes_fastais_reset_opt_and_start_epoch(dls):
    """fastai's fit(n, lr, reset_opt=True, start_epoch=k) was a TypeError: a new optimizer, epochs k.. only,
    the schedule starting where epoch k sits."""
    learn = make_learner(dls)
    learn.fit(1, 1e-3)
    before = learn.optimizer
    learn.fit(1, 1e-3, reset_opt=True)
    assert learn.optimizer is not before
    n = len(dls.train)
    learn.fit_one_cycle(3, 1e-3, start_epoch=2)
    assert [row["epoch"] for row in learn.recorder.history[-1:]] == [2]
    expected = OneCycleSchedule(resolve_lrs(1e-3, 3), 3 * n)
    for step, lrs in enumerate(learn.recorder.lrs[-n:]):
        assert lrs == pytest.approx(expected.lrs_at(2 * n + step))
    assert len(learn.recorder.lrs) == 3 * n  # two plain fits, then one epoch of the cycle
    with pytest.raises(ValueError, match="from 0 to n_epoch"):
        learn.fit(1, 1e-3, start_epoch=2)


def test_optimizer_defaults_follow_fastai(dls):
    learn = make_learner(dls)
    optimizer = learn.ensure_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert group["eps"] == 1e-5 and group["betas"][1] == 0.99
        expected_wd = 0.0 if all(p.ndim <= 1 for p in group["params"]) else 0.01
        assert group["weight_decay"] == expected_wd
    sgd = make_learner(dls, seed=1)
    sgd_learner = Learner(dls, sgd.model, optimizer="sgd", quiet=True)
    assert isinstance(sgd_learner.ensure_optimizer(), torch.optim.SGD)


def test_validate_uses_the_whole_set(dls):
    learn = make_learner(dls)
    logs = learn.validate()
    logits, targets = learn.collect_logits(dls.valid)
    assert len(targets) == len(dls.valid.dataset)
    assert logs["accuracy"] == pytest.approx((logits.argmax(1) == targets).float().mean().item())
    assert logs["valid_loss"] == pytest.approx(nn.functional.cross_entropy(logits, targets).item(), rel=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda learn: learn.fit(0, 1e-3), "epochs"),
    (lambda learn: learn.fit(1, 0.0), "positive"),
    (lambda learn: learn.fit(1, float("nan")), "positive"),
    (lambda learn: learn.fit_one_cycle(1, -1e-3), "positive"),
    (lambda learn: learn.fit_one_cycle(1, [1e-3, 1e-3]), "2 learning rates for 3"),
    (lambda learn: learn.fine_tune(0), "epochs"),
    (lambda learn: learn.fit_one_cycle(1, "fast"), "auto"),
])
def test_bad_training_input_fails_before_touching_the_model(dls, call, match):
    learn = make_learner(dls)
    before = state(learn.model)
    with pytest.raises(ValueError, match=match):
        call(learn)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    assert learn.recorder.history == []


def test_unknown_metric_and_architecture(dls):
    with pytest.raises(ValueError, match="Did you mean: error_rate"):
        vision_learner(dls, "test_resnet", metrics=["eror_rate"], pretrained=False)
    with pytest.raises(UnknownArchitectureError, match="resnet34"):
        vision_learner(dls, "resnet3", pretrained=False)


class NaNAfter(nn.Module):
    """Cross-entropy that turns NaN after n calls, and raises KeyboardInterrupt at call `interrupt_at`."""

    def __init__(self, n, interrupt_at=None):
        super().__init__()
        self.n, self.calls, self.interrupt_at = n, 0, interrupt_at

    def forward(self, logits, targets):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        loss = nn.functional.cross_entropy(logits, targets)
        return loss * math.nan if self.calls > self.n else loss


@pytest.mark.parametrize("overlap", [False, True])  # True: the loss is read one step late, as on CUDA
def test_nan_loss_stops_and_restores_last_good_weights(dls, overlap):
    learn = make_learner(dls, loss_func=NaNAfter(len(dls.train) + 2))
    learn.stepper.overlap_steps = overlap
    learn.unfreeze()
    learn.fit(1, 1e-3)
    good = state(learn.model)
    with pytest.raises(NonFiniteLossError, match="restored"):
        learn.fit(1, 1e-3)
    assert all(torch.equal(good[k], v) for k, v in learn.model.state_dict().items())
    assert len(learn.recorder.history) == 1
    logits, _ = learn.collect_logits(dls.valid)  # the model is still usable
    assert torch.isfinite(logits).all()


class InterruptAt(Callback):
    def __init__(self, step):
        self.step = step

    def after_batch(self, step, logs):
        if step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_ends_the_fit_cleanly(dls, capsys):
    learn = make_learner(dls)
    learn.fit(1, 1e-3)
    learn.fit(3, 1e-3, callbacks=[InterruptAt(len(dls.train) + 2)])
    assert learn.interrupted
    assert len(learn.recorder.history) == 1
    assert any("interrupted" in note for note in learn.recorder.notes)
    assert math.isfinite(learn.validate()["valid_loss"])


def test_seed_repeats_exactly_and_leaves_global_rng_alone(dls):
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    weights = []
    for _ in range(2):
        learn = make_learner(dls, seed=7)
        learn.fine_tune(1)
        weights.append(state(learn.model))
    assert torch.equal(torch.get_rng_state(), global_state)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_progress_prints_one_line_per_epoch_without_a_tty(dls):
    learn = make_learner(dls)
    stream = io.StringIO()
    learn.fit(2, 1e-3, callbacks=[ProgressCallback(stream=stream)])
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "error_rate", "accuracy", "time"]
    quiet = io.StringIO()
    learn.fit(1, 1e-3, callbacks=[ProgressCallback(quiet=True, stream=quiet)])
    assert quiet.getvalue() == ""


def test_early_stopping_save_best_and_csv(dls, tmp_path):
    learn = make_learner(dls)
    best = SaveBestModel("valid_loss", path=tmp_path / "best.safetensors")
    stopper = EarlyStopping("valid_loss", patience=0, min_delta=10.0)  # never "improves" by 10
    learn.fit(5, 1e-3, callbacks=[best, stopper, CSVLogger(tmp_path / "history.csv")])
    assert len(learn.recorder.history) == 2  # first epoch sets the best, the second stops
    assert (tmp_path / "best.safetensors").exists() and best.best_epoch is not None
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss,valid_loss,error_rate,accuracy,time") and len(rows) == 3
    with pytest.raises(KeyError, match="monitors 'nope'"):
        learn.fit(1, 1e-3, callbacks=[EarlyStopping("nope")])


def test_recorder_plots(dls, tmp_path):
    learn = make_learner(dls)
    learn.fine_tune(1)
    assert learn.recorder.plot_loss(tmp_path / "loss.png").stat().st_size > 1000
    assert learn.recorder.plot_sched(tmp_path / "sched.png").stat().st_size > 1000
    assert len(learn.recorder.smooth_losses) == len(learn.recorder.losses) == 2 * len(dls.train)


def test_keras_bn_keeps_pretrained_statistics_after_unfreeze(dls):
    learn = make_learner(dls, train_bn=False)
    learn.unfreeze()
    before = state(learn.model)
    learn.fit(1, 1e-2)
    after = learn.model.state_dict()
    body_norms = [
        (name, module) for name, module in learn.model.body.named_modules(prefix="body")
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    for name, _module in body_norms:
        assert torch.equal(before[f"{name}.running_mean"], after[f"{name}.running_mean"]), name
    assert any(not torch.equal(before[f"{name}.weight"], after[f"{name}.weight"]) for name, _ in body_norms)
    # The new head's BatchNorm layers learn their statistics.
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head.") and "running" in k)


def test_train_bn_default_depends_on_pretrained(dls):
    assert make_learner(dls).train_bn is True  # random body: its statistics must be learned
    assert make_learner(dls, train_bn=False).train_bn is False


def test_compile_option_trains_like_eager(dls):
    """The plumbing of compile_model, with dynamo's eager backend (no C++ compiler needed)."""
    plain = make_learner(dls)
    plain.fit(1, 1e-3)
    compiled = make_learner(dls)
    compiled.compile_model = "eager"
    compiled.fit(1, 1e-3)
    assert compiled.stepper.train_model is not compiled.model
    # Eager steps run folded norms and cropped kernels (the same sums in another order), compiled ones the
    # plain modules: the first step agrees to rounding, and Adam lets the rounding grow a little per step.
    assert compiled.recorder.losses[0] == pytest.approx(plain.recorder.losses[0], rel=1e-5)
    assert compiled.recorder.losses == pytest.approx(plain.recorder.losses, rel=1e-2)


class StepLog(Callback):
    def __init__(self):
        self.events = []

    def before_batch(self, step):
        self.events.append(("before", step))

    def after_batch(self, step, logs):
        self.events.append(("after", step, logs["loss"]))


def test_overlapped_steps_train_and_record_like_synchronous_ones(dls):
    """The CUDA loop reads each loss one step late; forced on here, it must train bit for bit alike."""
    runs = {}
    for overlap in (False, True):
        learn = make_learner(dls, seed=3)
        learn.stepper.overlap_steps = overlap
        learn.fine_tune(1)
        runs[overlap] = (state(learn.model), learn.recorder.losses, learn.step)
    (sync_state, sync_losses, sync_steps), (lag_state, lag_losses, lag_steps) = runs[False], runs[True]
    assert all(torch.equal(sync_state[k], lag_state[k]) for k in sync_state)
    assert sync_losses == lag_losses and sync_steps == lag_steps == 2 * len(dls.train)


class StopAt(StepLog):
    def __init__(self, step):
        super().__init__()
        self.stop_step = step

    def after_batch(self, step, logs):
        super().after_batch(step, logs)
        return step == self.stop_step


def test_batch_callbacks_keep_the_strict_order_and_stop_exactly_when_steps_overlap(dls):
    learn = make_learner(dls, seed=3)
    learn.stepper.overlap_steps = True
    learn.unfreeze()
    log = StopAt(2)
    learn.fit(1, 1e-3, callbacks=[log])
    assert [event[:2] for event in log.events] == [("before", 0), ("after", 1), ("before", 1), ("after", 2)]
    assert learn.step == 2 and len(learn.recorder.losses) == 2


def test_an_interrupt_while_a_nan_step_is_unread_restores_the_epoch_start(dls):
    learn = make_learner(dls, loss_func=NaNAfter(10**9))
    learn.stepper.overlap_steps = True
    learn.unfreeze()
    learn.fit(1, 1e-3)
    good = state(learn.model)
    steps_before = learn.step
    calls = learn.loss_func.calls
    learn.loss_func.n, learn.loss_func.interrupt_at = calls + 1, calls + 3  # NaN at the 2nd step, Ctrl-C in the 3rd
    learn.fit(1, 1e-3)
    assert learn.interrupted
    assert all(torch.equal(good[k], v) for k, v in learn.model.state_dict().items())
    assert learn.step == steps_before + 1  # the one good step
    assert any("restored" in note for note in learn.recorder.notes)


def test_cudnn_autotune_is_scoped_to_the_fit_and_respects_determinism(dls):
    learn = make_learner(dls)
    before = torch.backends.cudnn.benchmark
    learn.fit(1, 1e-3)
    assert torch.backends.cudnn.benchmark == before  # CPU: untouched
    cuda = torch.device("cuda")  # the switch only reads the device type; no GPU is used
    torch.backends.cudnn.benchmark = False
    try:
        with cudnn_autotune(cuda):
            assert torch.backends.cudnn.benchmark
            with cudnn_autotune(cuda, training=False):  # evaluation inside a fit: the user's setting
                assert not torch.backends.cudnn.benchmark
            assert torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # the user's own choice is kept everywhere
        with cudnn_autotune(cuda), cudnn_autotune(cuda, training=False):
            assert torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
        with cudnn_autotune(cuda):
            assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = before


class WatchOnlyStepLog(StepLog):
    _watches_batches_only = True  # as the recorder and progress bar: the loop may read losses a step late


def test_events_stay_in_order_when_the_loop_reads_losses_a_step_late(dls):
    """With only watching callbacks the GPU loop overlaps steps; their events still arrive in order."""
    learn = make_learner(dls, seed=3)
    learn.stepper.overlap_steps = True  # as on CUDA
    log = WatchOnlyStepLog()
    learn.fit(1, 1e-3, callbacks=[log])
    losses, n = learn.recorder.losses, len(dls.train)
    expected = [event for k in range(n) for event in (("before", k), ("after", k + 1, losses[k]))]
    assert log.events == expected


def test_a_callback_that_acts_per_batch_sees_each_step_as_it_happens(dls):
    """A user callback overriding after_batch may stop or read weights: the loop then reads at once."""
    learn = make_learner(dls, seed=3)
    learn.stepper.overlap_steps = True
    seen = []

    class WeightWatcher(Callback):
        def before_fit(self, learner):
            self.learner = learner

        def after_batch(self, step, logs):
            seen.append((step, learn.step))

    learn.fit(1, 1e-3, callbacks=[WeightWatcher()])
    assert seen == [(k, k) for k in range(1, len(dls.train) + 1)]


def test_a_subclass_that_overrides_a_watchers_batch_event_is_not_taken_for_a_watcher(dls):
    """The watch-only mark is inherited, but a subclass that overrides after_batch may stop: exact stop."""

    class Stopper(WatchOnlyStepLog):
        def after_batch(self, step, logs):
            super().after_batch(step, logs)
            return step == 2

    learn = make_learner(dls, seed=3)
    learn.stepper.overlap_steps = True
    learn.unfreeze()
    learn.fit(1, 1e-3, callbacks=[Stopper()])
    assert learn.step == 2 and len(learn.recorder.losses) == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _FailsIn(Callback):
    """Raises in one event, as a user's buggy callback would."""

    def __init__(self, event: str) -> None:
        self.event = event

    def before_fit(self, learner):
        self.learner = learner
        if self.event == "before_fit":
            raise RuntimeError("the user's before_fit failed")

    def after_epoch(self, epoch, logs):
        if epoch == 0:
            self.first_epoch = state(self.learner.model)

    def after_fit(self, logs):
        if self.event == "after_fit":
            raise RuntimeError("the user's after_fit failed")


def test_a_callback_failing_in_after_fit_still_lets_the_next_one_restore_the_best_weights(dls, tmp_path):
    learn = make_learner(dls)
    failing = _FailsIn("after_fit")
    best = SaveBestModel("epoch", path=tmp_path / "best.safetensors", mode="min")  # the best is epoch 0
    with pytest.raises(RuntimeError, match="after_fit failed"):
        learn.fit(2, 1e-2, callbacks=[failing, best])
    assert all(torch.equal(value, failing.first_epoch[name]) for name, value in state(learn.model).items())


def test_a_callback_failing_in_before_fit_leaves_no_progress_bar_running(dls):
    import sys

    stdout = sys.stdout
    learn = make_learner(dls)
    with pytest.raises(RuntimeError, match="before_fit failed"):
        learn.fit(1, 1e-3, callbacks=[ProgressCallback(stream=_Terminal()), _FailsIn("before_fit")])
    assert sys.stdout is stdout  # a live bar left running would still hold the terminal's output
    learn.fit(1, 1e-3)
    assert len(learn.recorder.history) == 1


def test_a_loss_class_without_parentheses_is_refused_when_the_learner_is_built(tiny_learner):
    # A notebook's `loss_func=nn.CrossEntropyLoss` used to train until torch failed on the first batch
    # with "Boolean value of Tensor with more than one value is ambiguous".
    with pytest.raises(TypeError, match=r"CrossEntropyLoss \(a class\).*CrossEntropyLoss\(\)"):
        tiny_learner(loss_func=nn.CrossEntropyLoss)
    learn = tiny_learner()
    with pytest.raises(TypeError, match=r"got 3"):
        learn.loss_func = 3


@pytest.mark.parametrize(("loss_func", "found"), [
    (nn.CrossEntropyLoss(reduction="none"), r"a tensor of shape \(16,\)"),
    (lambda logits, targets: 1.0, "float"),
    (lambda logits, targets: torch.tensor(1.0), "no gradient"),
])
def test_a_loss_that_is_not_a_differentiable_number_says_so(tiny_learner, loss_func, found):
    # Each used to fail deep in autograd ("grad can be implicitly created only for scalar outputs",
    # "'float' object has no attribute 'detach'", "element 0 of tensors does not require grad").
    learn = tiny_learner(loss_func=loss_func)
    with pytest.raises(TypeError, match=rf"one number.*{found}.*(reduction|requires grad|computed from)"):
        learn.fit(1)


def _plain_module(n_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, n_out))


@pytest.mark.parametrize("n_out", [12, 1])
def test_a_plain_model_with_the_wrong_number_of_outputs_stops_before_training(make_image_folder, n_out: int) -> None:
    """12 outputs for 2 classes trained and reported metrics without a word (predict could then name a class index
    the data has not got); 1 output failed inside cross-entropy ('Target 1 is out of bounds')."""
    dls = ImageDataLoaders.from_folder(make_image_folder(), size=16, bs=4, seed=0, num_workers=0)
    model = _plain_module(n_out)
    learn = Learner(dls, model, device="cpu", seed=0, quiet=True)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    expected = rf"outputs {n_out} value.* per image.* 2 classes \(cat, dog\).*nn.Linear\(4, 2\)"
    with pytest.raises(ValueError, match=expected):
        learn.fit(1)
    with pytest.raises(ValueError, match=expected):
        learn.lr_find(num_it=8)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert learn.recorder.history == []


def test_a_plain_model_with_the_right_number_of_outputs_trains(make_image_folder) -> None:
    dls = ImageDataLoaders.from_folder(make_image_folder(), size=16, bs=4, seed=0, num_workers=0)
    learn = Learner(dls, _plain_module(2), device="cpu", seed=0, quiet=True)
    learn.fit(1)
    assert len(learn.recorder.history) == 1


def test_loading_weights_of_another_model_names_what_differs(dls, tmp_path) -> None:
    """learn.load of weights saved from a model with other classes (or another arch) raised torch's raw
    'Error(s) in loading state_dict ... size mismatch' with no way on."""
    three = make_learner(dls)
    three.path = tmp_path
    three.save("stage-1")
    two = make_learner(_two_class_loaders(tmp_path))
    two.path = tmp_path
    before = {name: value.clone() for name, value in two.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"stage-1.safetensors does not fit this learner's model.*"
                                         r"saved \[3, .*\], this model \[2, .*\].*3 outputs, this one has 2") as caught:
        two.load("stage-1")
    assert "Error(s) in loading" not in str(caught.value)
    assert all(torch.equal(before[name], value) for name, value in two.model.state_dict().items())


def _two_class_loaders(tmp_path):
    from PIL import Image

    root = tmp_path / "two"
    for name, color in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        for split, count in (("train", 6), ("valid", 2)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                Image.new("RGB", (20, 20), color).save(root / split / name / f"{index}.png")
    return ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
