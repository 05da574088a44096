"""Issue 25 part 1: one prediction record, validated against its one JSON Schema for every producer:
predict --format json|csv, serve's /predict, evaluate --json / --format csv|json."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from app_helpers import serving, write_png

from unfreeze.apps.serve import ServeSettings, create_app, load_model
from unfreeze.cli import main
from unfreeze.inference import CSV_COLUMNS, PREDICTION_SCHEMA, SCHEMA_VERSION

jsonschema = pytest.importorskip("jsonschema", reason="pip install 'unfreeze[test]' for the schema tests")
REPO = Path(__file__).resolve().parents[2]


def validate(records: list[dict]) -> None:
    validator = jsonschema.Draft202012Validator(PREDICTION_SCHEMA)
    for record in records:
        errors = sorted(validator.iter_errors(record), key=str)
        assert not errors, (record, [error.message for error in errors])


def test_the_schema_is_valid_documented_and_can_fail() -> None:
    jsonschema.Draft202012Validator.check_schema(PREDICTION_SCHEMA)
    assert json.loads((REPO / "docs" / "prediction.schema.json").read_text()) == PREDICTION_SCHEMA
    good = {"file": "a.jpg", "label": "cat", "probability": 0.9, "top_k": [{"label": "cat", "probability": 0.9}],
            "error": None, "unknown": False, "ood_score": 3.2}
    validate([good])
    validator = jsonschema.Draft202012Validator(PREDICTION_SCHEMA)
    for bad in ({**good, "prob": 0.9}, {**good, "top_k": [["cat", 0.9]]}, {**good, "probability": 1.5},
                {key: value for key, value in good.items() if key != "error"}, {**good, "path": "a.jpg"}):
        assert not validator.is_valid(bad), bad


def images_of(run: Path) -> list[Path]:
    return sorted((run.parent / "images" / "valid").rglob("*.png"))


def test_predict_json_and_csv_write_the_same_records_in_input_order(trained_app_run: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    inputs = [*images_of(trained_app_run)[:3], broken, images_of(trained_app_run)[5]]
    argv = ["predict", str(trained_app_run), *map(str, inputs), "--top-k", "2"]
    assert main([*argv, "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["schema_version"] == SCHEMA_VERSION
    records = document["predictions"]
    validate(records)
    assert [record["file"] for record in records] == [str(path) for path in inputs]
    assert records[3]["error"] and records[3]["label"] is None and records[3]["top_k"] == []
    assert all(len(record["top_k"]) == 2 for record in records if record["error"] is None)
    assert main([*argv, "--format", "csv"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["file"] for row in rows] == [record["file"] for record in records]
    assert [row["label"] for row in rows] == [record["label"] or "" for record in records]
    first = records[0]["top_k"]
    assert rows[0]["top_k"] == ";".join(f"{entry['label']}:{entry['probability']:.6f}" for entry in first)


@pytest.fixture(scope="module")
def learner(trained_app_run: Path) -> object:
    return load_model(trained_app_run)


def test_serve_answers_records_in_request_order_with_a_per_file_413(learner: object, trained_app_run: Path,
                                                                   tmp_path: Path) -> None:
    """Serve rejected the whole request for one file over the limit; and it ignored ?top_k=."""
    big = write_png(tmp_path / "big.png", (10, 10, 10), size=(400, 400)).read_bytes()
    small = [path.read_bytes() for path in images_of(trained_app_run)[:2]]
    lines: list[str] = []
    app = create_app(learner, "tiny", ServeSettings(max_upload_mb=0.01, top_k=1), log=lines.append)
    files = [("file", ("a.png", small[0])), ("file", ("big.png", big)), ("file", ("notes.txt", b"text")),
             ("file", ("b.png", small[1]))]
    with serving(app) as url:
        response = httpx.post(f"{url}/predict?top_k=3", files=files, timeout=30)
        assert response.status_code == 200
        answer = response.json()
        assert answer["schema_version"] == SCHEMA_VERSION
        records = answer["predictions"]
        validate(records)
        assert [record["file"] for record in records] == ["a.png", "big.png", "notes.txt", "b.png"]
        assert records[1]["status"] == 413 and "--max-upload-mb" in records[1]["error"]
        assert "not a readable image" in records[2]["error"] and "status" not in records[2]
        assert [len(record["top_k"]) for record in records] == [3, 0, 0, 3]
        assert records[0]["top_k"][0] == {"label": records[0]["label"], "probability": records[0]["probability"]}
        only_big = httpx.post(f"{url}/predict", files=[("file", ("big.png", big))], timeout=30)
        assert only_big.status_code == 413 and "big.png" in only_big.json()["detail"]
        validate(only_big.json()["predictions"])
        wrong = httpx.post(f"{url}/predict?top_k=0", files=[("file", ("a.png", small[0]))], timeout=30)
        assert wrong.status_code == 422 and "top_k must be a whole number" in wrong.json()["detail"]
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    assert len(lines) == 4  # one per request, with method, path, status, files and time
    assert re.fullmatch(r"unfreeze serve: POST /predict 200, 4 file\(s\), \d+ ms", lines[0])
    assert re.fullmatch(r"unfreeze serve: POST /predict 413, 1 file\(s\), \d+ ms", lines[1])
    assert re.fullmatch(r"unfreeze serve: POST /predict 422, 0 file\(s\), \d+ ms", lines[2])
    assert re.fullmatch(r"unfreeze serve: GET /health 200, 0 file\(s\), \d+ ms", lines[3])


def test_evaluate_json_has_the_matrix_the_pairs_per_class_and_a_record_per_image(
        trained_app_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = trained_app_run.parent / "images" / "valid"
    report = tmp_path / "report.json"
    assert main(["evaluate", str(trained_app_run), str(data), "--json", str(report), "--top-k", "2"]) == 0
    document = json.loads(report.read_text())
    assert document["schema_version"] == SCHEMA_VERSION
    assert set(document["per_class"]) == {"ant", "bee", "cat"}
    matrix = document["confusion_matrix"]
    assert matrix["classes"] == ["ant", "bee", "cat"] and sum(map(sum, matrix["counts"])) == 12
    assert all(set(pair) == {"actual", "predicted", "count"} for pair in document["most_confused"])
    records = document["predictions"]
    validate(records)
    assert len(records) == 12 and all(len(record["top_k"]) == 2 for record in records)
    assert all(record["correct"] == (record["label"] == record["actual"]) for record in records)
    accuracy = sum(record["correct"] for record in records) / 12
    assert accuracy == pytest.approx(1 - document["scores"]["error_rate"], abs=1e-6)
    for index, (actual, predicted) in enumerate([(a, p) for a in range(3) for p in range(3)]):
        names = matrix["classes"]
        assert matrix["counts"][actual][predicted] == sum(
            record["actual"] == names[actual] and record["label"] == names[predicted] for record in records), index
    capsys.readouterr()
    assert main(["evaluate", str(trained_app_run), str(data), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert tuple(rows[0]) == (*CSV_COLUMNS, "actual", "correct") and len(rows) == 12
    assert [row["file"] for row in rows] == [record["file"] for record in records]
    assert "labelled images" in captured.err  # the summary goes to stderr, stdout is the CSV only
    assert main(["evaluate", str(trained_app_run), str(data), "--format", "json"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    validate(streamed["predictions"])
    assert streamed["confusion_matrix"] == matrix
