"""StepProgress: a line per tenth in a pipe, a live bar on a terminal, nothing when quiet."""

from __future__ import annotations

import io

from unfreeze.progress import StepProgress, pipe_stream


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_one_line_per_tenth() -> None:
    out = io.StringIO()
    with StepProgress("predict", total=95, stream=out, unit="images") as progress:
        for _ in range(95):
            progress.advance(detail="ok")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[0] == "predict: 9/95 images, ok" and lines[-1] == "predict: 95/95 images, ok"
    big_steps = io.StringIO()
    with StepProgress("check", total=10, stream=big_steps) as progress:
        progress.advance(7)  # a step over several tenths prints one line
        progress.advance(3)
    assert big_steps.getvalue().splitlines() == ["check: 7/10", "check: 10/10"]


def test_quiet_and_empty_print_nothing() -> None:
    out = io.StringIO()
    with StepProgress("predict", total=10, quiet=True, stream=out) as progress:
        progress.advance(10)
    with StepProgress("predict", total=0, stream=out) as progress:
        progress.advance(1)
    assert out.getvalue() == ""
    assert pipe_stream(quiet=True, stream=out) is None and pipe_stream(quiet=False, stream=out) is out
    assert pipe_stream(quiet=False, stream=Terminal()) is None


def test_a_terminal_gets_a_bar_not_lines() -> None:
    terminal = Terminal()
    with StepProgress("calibration", total=50, stream=terminal, unit="images") as progress:
        for _ in range(50):
            progress.advance()
    shown = terminal.getvalue()
    assert "calibration" in shown and "50/50" in shown  # the bar's last frame (erased after: transient)
    assert "calibration: 5/50 images" not in shown


class Clock:
    """time.monotonic for the progress module, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_delayed_progress_shows_only_a_step_that_takes_a_while(monkeypatch) -> None:
    import unfreeze.progress as progress_module

    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    quick = io.StringIO()
    with StepProgress("flip check", total=10, stream=quick, delay=2.0) as progress:
        for _ in range(10):
            clock.now += 0.1  # 1 s in all: under the delay
            progress.advance()
    assert quick.getvalue() == ""
    slow = io.StringIO()
    with StepProgress("noise check", total=10, stream=slow, delay=2.0) as progress:
        for _ in range(10):
            clock.now += 0.5  # due after the fourth unit: a line a tenth from then on
            progress.advance()
    assert slow.getvalue().splitlines() == [f"noise check: {done}/10" for done in range(5, 11)]


def test_the_checks_around_training_show_progress_unless_quiet(make_image_folder, monkeypatch, capsys) -> None:
    from unfreeze.data import ImageDataLoaders
    from unfreeze.train import flip_check, trust_fit
    from unfreeze.train.builders import vision_learner
    from unfreeze.train.recipe import noise, probe

    for module in (flip_check, trust_fit, noise, probe):  # due at once, as a long step would be
        monkeypatch.setattr(module, "AROUND_TRAINING_DELAY", 0.0)
    root = make_image_folder(("a", "b"), n_train=24, n_valid=4, size=(40, 40))
    dls = ImageDataLoaders.from_folder(root, size=32, bs=8, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=False, seed=0, head="linear")
    capsys.readouterr()
    flip_check.check_flips(learn, max_items=20)
    probe.fit_linear_probe(learn, passes=1)
    noise.disagreements(learn)
    learn.calibrate()
    out = capsys.readouterr().out.splitlines()
    # 24 training and 4 validation images a class
    for description, total in (("flip check", 20), ("linear probe", 48), ("disagreements", 48), ("calibration", 8),
                               ("unknown score", 48)):
        assert f"{description}: {total}/{total} images" in " ".join(out).replace("training images", "images"), \
            (description, out)
    learn.quiet = True
    flip_check.check_flips(learn, max_items=20)
    learn.calibrate()
    assert capsys.readouterr().out == ""
