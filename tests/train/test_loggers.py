"""TensorBoard and MLflow loggers: what they write reads back, a missing package says how to install
it, and `import unfreeze` loads neither package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from unfreeze import MLflowLogger, TensorBoardLogger


def test_tensorboard_event_files_hold_the_step_and_epoch_scalars(tiny_learner, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    learn = tiny_learner(metrics=["error_rate"])
    logger = TensorBoardLogger(tmp_path / "tb", log_every=2, log_hparams=True)
    rows = learn.fit(1, 1e-2, callbacks=[logger]) + learn.fit(1, 1e-2, callbacks=[logger])  # one run

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {
        "step/loss", "step/smooth_loss", "step/lr",
        "epoch/train_loss", "epoch/valid_loss", "epoch/error_rate", "epoch/time",
    }
    losses = events.Scalars("step/loss")
    n_steps = len(learn.recorder.losses)
    assert [e.step for e in losses] == list(range(2, n_steps + 1, 2))  # every 2nd step, across both fits
    assert [e.value for e in losses] == pytest.approx(learn.recorder.losses[1::2], rel=1e-6)
    assert [e.value for e in events.Scalars("step/lr")] == pytest.approx([r[-1] for r in learn.recorder.lrs[1::2]])
    valid = events.Scalars("epoch/valid_loss")
    assert [e.step for e in valid] == [0, 1]
    assert [e.value for e in valid] == pytest.approx([row["valid_loss"] for row in rows], rel=1e-6)

    hparams = EventAccumulator(str(tmp_path / "tb" / "hparams"))
    hparams.Reload()
    assert hparams.PluginTagToContent("hparams")  # the HParams tab's session data
    assert hparams.Scalars("hparam/error_rate")[-1].value == pytest.approx(rows[-1]["error_rate"])


def test_mlflow_run_holds_the_params_and_metrics(tiny_learner, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")  # the local sqlite store; the `mlflow` extra installs it
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    learn = tiny_learner(metrics=["error_rate"])
    learn.freeze()
    logger = MLflowLogger("tests", run_name="tiny", tracking_uri=uri, log_every=1)
    rows = learn.fit(1, 1e-2, callbacks=[logger])
    learn.unfreeze()
    rows += learn.fit(1, 1e-3, callbacks=[logger])  # like fine_tune: the same run continues

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == logger.run_id
    assert run.info.run_name == "tiny"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert {k: params[k] for k in ("arch", "n_groups", "batch_size", "frozen_to", "optimizer", "metrics")} == {
        "arch": "custom", "n_groups": "3", "batch_size": "16", "frozen_to": "2", "optimizer": "adamw",
        "metrics": "error_rate",
    }
    valid = client.get_metric_history(run.info.run_id, "epoch/valid_loss")
    assert sorted((m.step, m.value) for m in valid) == [(i, pytest.approx(r["valid_loss"])) for i, r in enumerate(rows)]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "epoch/error_rate")} == {0, 1}
    losses = sorted(client.get_metric_history(run.info.run_id, "step/loss"), key=lambda m: m.step)
    assert [m.step for m in losses] == list(range(1, len(learn.recorder.losses) + 1))
    assert [m.value for m in losses] == pytest.approx(learn.recorder.losses)


@pytest.mark.parametrize(("logger", "package"), [(TensorBoardLogger, "tensorboard"), (MLflowLogger, "mlflow")])
def test_a_missing_package_says_which_extra_to_install(monkeypatch, logger, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import <package>` raise ImportError
    with pytest.raises(ImportError, match=rf"needs the {package} package.*pip install 'unfreeze\[{package}\]'"):
        logger()


def test_log_every_must_be_a_positive_whole_number():
    pytest.importorskip("tensorboard")
    with pytest.raises(ValueError, match="log_every must be a whole number of steps >= 1"):
        TensorBoardLogger(log_every=0)


def test_import_unfreeze_loads_neither_tensorboard_nor_mlflow():
    code = (
        "import sys, unfreeze; from unfreeze import EMA, MLflowLogger, TensorBoardLogger; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorboard', 'mlflow', 'tensorboardX'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
