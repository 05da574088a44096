"""`unfreeze train --task regression` from a CSV of file,value(s), then evaluate, predict, serve and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cli_helpers import TINY, run_user_error
from unfreeze.apps.serve import ServeSettings, create_app, load_model
from unfreeze.cli import main


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    """Grey images whose brightness and darkness are their two numbers, listed in targets.csv."""
    root = tmp_path / "grey"
    root.mkdir()
    rows = ["file,bright,dark"]
    for index, value in enumerate(np.linspace(0.1, 0.9, 16)):
        Image.new("RGB", (20, 20), (int(value * 255),) * 3).save(root / f"{index:02d}.png")
        rows.append(f"{index:02d}.png,{value:.3f},{1 - value:.3f}")
    (root / "targets.csv").write_text("\n".join(rows) + "\n")
    return root


def test_train_evaluate_predict_serve_and_report_a_regression_run(numbers: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "grey"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert {"model.unfreeze", "predicted_vs_true.png", "loss.png", "report.html"} <= {p.name for p in out.iterdir()}
    assert summary["task"] == {"name": "regression", "points": False, "loss": "mse"}
    assert summary["data"]["classes"] == ["bright", "dark"] and set(summary["report"]) == {"bright", "dark"}
    assert set(summary["report"]["bright"]) == {"mae", "rmse", "r2", "count"} and "mae" in summary["final"]
    assert "Final: mae" in printed
    assert ", 2 outputs, size" in printed and " classes, size" not in printed  # the loaders' line names outputs
    report = (out / "report.html").read_text()
    assert "predicted vs true values" in report and "<th>rmse</th>" in report
    assert "<h2>Predicted vs true (validation)</h2>" in report and "<h2>Confusion matrix</h2>" not in report

    scores = tmp_path / "scores.json"
    capsys.readouterr()
    assert main(["evaluate", str(out), str(numbers), "--csv", "targets.csv", "--json", str(scores)]) == 0
    table = capsys.readouterr().out
    assert "count 16" in table and "count 16.0000" not in table  # a count of images is a whole number
    evaluated = json.loads(scores.read_text())
    assert evaluated["images"] == 16 and {"valid_loss", "mae", "r2_score"} <= set(evaluated["scores"])
    assert evaluated["report"]["dark"]["count"] == 16
    records = evaluated["predictions"]  # the prediction record, with the numbers and the true ones
    assert len(records) == 16 and all(set(record["values"]) == set(record["actual"]) == {"bright", "dark"}
                                      and record["top_k"] == [] for record in records)

    capsys.readouterr()
    assert main(["predict", str(out), str(numbers / "03.png"), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["predictions"]
    assert set(row["values"]) == {"bright", "dark"} and row["label"].startswith("bright=")

    with TestClient(create_app(load_model(out), "grey", ServeSettings())) as client:  # runs the app's batcher
        upload = ("03.png", (numbers / "03.png").read_bytes(), "image/png")
        answer = client.post("/predict", files=[("file", upload)])
    assert answer.status_code == 200
    (prediction,) = answer.json()["predictions"]
    assert set(prediction["values"]) == {"bright", "dark"} and prediction["file"] == "03.png"
    assert all(isinstance(value, float) for value in prediction["values"].values())
    # Every producer's regression record fits the one prediction schema.
    from unfreeze.inference import PREDICTION_SCHEMA

    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(PREDICTION_SCHEMA)
    assert all(validator.is_valid(record) for record in [*records, row, prediction])

    capsys.readouterr()
    assert main(["export", str(out)]) == 0
    assert "2 outputs (bright, dark)" in capsys.readouterr().out  # numbers, not "2 classes"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "openvino"])
def test_a_regression_run_exports_its_values_to_every_format(numbers: Path, tmp_path: Path, fmt: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The deployment files were refused for regression runs ('predicts numbers'): a regression model could
    only be served by unfreeze itself. Now the graph outputs the numbers (`values`), as PyTorch gives them."""
    import onnx

    from unfreeze import load_learner
    from unfreeze.inference.deploy import load_deployed_outputs

    pytest.importorskip({"onnx": "onnxruntime", "torchscript": "torch", "openvino": "openvino"}[fmt])
    out = tmp_path / "runs" / "grey"
    size = ["--size", "32"] if fmt == "openvino" else []  # OpenVINO cannot convert test_resnet's pooling at 16 px
    assert main(["train", str(numbers), *TINY, *size, "--task", "regression", "--csv", "targets.csv", "--out", str(out),
                 "--quiet"]) == 0
    deploy = tmp_path / "deploy"
    capsys.readouterr()
    assert main(["export", str(out), "--format", fmt, "--out", str(deploy)]) == 0
    printed = capsys.readouterr().out
    assert "largest difference of a value" in printed and "probabilit" not in printed
    learn = load_learner(out / "model.unfreeze")
    size = int(learn.dls.size)
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    file = deploy / {"onnx": "model.onnx", "torchscript": "model.pt", "openvino": "model.xml"}[fmt]
    (found,) = load_deployed_outputs(file, fmt)(images.numpy())
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (learn.dls.valid.mean, learn.dls.valid.std))
    with torch.no_grad():
        expected = learn.model.eval()((images.float() / 255 - mean) / std).numpy()
    assert found.shape == (len(images), 2) and np.abs(found - expected).max() < 1e-3
    card = (deploy / "model_card.md").read_text()
    assert "output `values`: float32 [N, 2]" in card and "`bright`, `dark`" in card and "<th>" not in card
    assert "| bright |" in card and "mae" in card.lower() and "probabilities" not in card
    if fmt == "onnx":
        graph = onnx.load(str(deploy / "model.onnx"))
        assert [output.name for output in graph.graph.output] == ["values"]
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as patch:  # refused before the run's model and images load (seconds)
            patch.setattr("unfreeze.cli.app_commands.load_run", lambda *args: pytest.fail("loaded the run"))
            line = run_user_error(["export", str(out), "--format", "onnx", "--int8", "--out", str(tmp_path / "q")],
                                  capsys)
            assert "regression" in line and "--int8" in line and not (tmp_path / "q").exists()
            line = run_user_error(["export", str(out), "--format", "torchscript", "--int8", "--out",
                                   str(tmp_path / "q")], capsys)
            assert "--int8 exists for --format onnx and openvino, not torchscript" in line
        capsys.readouterr()
        assert main(["export", str(out), "--onnx"]) == 0  # the float-input ONNX beside the export
        assert [output.name for output in onnx.load(str(out / "model.onnx")).graph.output] == ["values"]


def test_regression_without_a_csv_is_a_one_line_error(numbers: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["train", str(numbers), *TINY, "--task", "regression", "--out", str(tmp_path / "r")], capsys)
    assert "--task regression reads the numbers from a CSV" in line
    (numbers / "bad.csv").write_text("file,value\n00.png,bright\n")
    line = run_user_error(["train", str(numbers), *TINY, "--task", "regression", "--csv", "bad.csv",
                           "--out", str(tmp_path / "r")], capsys)
    assert "not a number" in line


@pytest.mark.parametrize("option", [["--class-weights", "auto"], ["--sampler", "balanced"],
                                    ["--label-smoothing", "0.1"], ["--imbalance", "logit_adjust"],
                                    ["--noise", "gce"], ["--noise", "trim"], ["--noise", "filter"]])
def test_class_balancing_options_on_regression_are_a_one_line_error(option: list[str], numbers: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # --class-weights auto used to end in a ValueError traceback; the others were silently ignored.
    out = tmp_path / "run"
    line = run_user_error(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", *option,
                           "--out", str(out)], capsys)
    assert option[0] in line and "regression" in line
    assert not out.exists()


def test_the_rerun_command_of_a_regression_run_trains_a_regression_run(numbers: Path, tmp_path: Path) -> None:
    out = tmp_path / "first"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(out),
                 "--quiet"]) == 0
    rerun = json.loads((out / "config.json").read_text())["rerun"].split()[1:]
    assert "--task" in rerun and rerun[rerun.index("--task") + 1] == "regression"
    assert main([*rerun, "--quiet"]) == 0
    again = json.loads((tmp_path / "first-2" / "summary.json").read_text())
    assert again["task"]["name"] == "regression" and again["data"]["classes"] == ["bright", "dark"]


def test_interpret_redraws_a_regression_runs_plot_and_prints_its_report(numbers: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(out),
                 "--quiet"]) == 0
    (out / "predicted_vs_true.png").unlink()
    capsys.readouterr()
    assert main(["interpret", str(out)]) == 0  # it was a ValueError's traceback
    printed = capsys.readouterr().out
    assert (out / "predicted_vs_true.png").exists()
    report = json.loads((out / "summary.json").read_text())["report"]
    assert f"bright  mae {report['bright']['mae']:.4f}" in printed and "dark  mae" in printed


def test_clean_on_a_regression_run_is_a_one_line_error(numbers: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(out),
                 "--quiet"]) == 0
    line = run_user_error(["clean", str(out), "--port", "0"], capsys)  # it was a ValueError's traceback
    assert "regression" in line and "targets.csv" in line


def test_a_semicolon_csv_trains_both_values(numbers: Path, tmp_path: Path) -> None:
    """The header was split at ',' only: a ';' CSV had '1 column(s)' and stopped."""
    (numbers / "semi.csv").write_text((numbers / "targets.csv").read_text().replace(",", ";"))
    out = tmp_path / "semi"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "semi.csv", "--out", str(out),
                 "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["data"]["classes"] == ["bright", "dark"]


def test_predict_table_of_a_regression_run_shows_values_not_a_probability(numbers: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", str(numbers), *TINY, "--task", "regression", "--csv", "targets.csv", "--out", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    images = [str(numbers / "03.png"), str(numbers / "12.png")]
    assert main(["predict", str(out), *images, "--top-k", "3", "--runtime", "torch", "--quiet"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["values", "path"]  # a regression model has no probability to show
    assert len(rows) == 2 and all("nan" not in row and "top 3" not in row for row in rows)
    for row, image in zip(rows, images, strict=True):
        assert row.startswith("bright=") and ", dark=" in row and row.endswith(f"  {image}")
    assert rows[0].index(images[0]) == rows[1].index(images[1]) == header.index("path")  # one column of paths
