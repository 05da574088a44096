"""`unfreeze serve`'s app on a real uvicorn server on 127.0.0.1: health, predictions, bad uploads, batching."""

from __future__ import annotations

import concurrent.futures
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_helpers import serving, write_png

from unfreeze.apps.batching import BatchSettings
from unfreeze.apps.serve import ServeSettings, create_app, load_model
from unfreeze.data import ImageDataLoaders
from unfreeze.tasks import MultiLabel
from unfreeze.train.builders import vision_learner
from unfreeze.train.learner import Learner

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def learner(trained_app_run: Path) -> object:
    return load_model(trained_app_run)


@pytest.fixture(scope="module")
def server(learner: object) -> Iterator[tuple[str, object]]:
    app = create_app(learner, "tiny", ServeSettings(top_k=2, batching=BatchSettings(window_ms=100)))
    with serving(app) as url:
        yield url, app


def post_files(url: str, files: list[tuple[str, bytes]], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/predict", files=[("file", item) for item in files], headers=headers, timeout=TIMEOUT)


def test_health_names_the_model_its_classes_and_task(server: tuple[str, object]) -> None:
    answer = httpx.get(f"{server[0]}/health", timeout=TIMEOUT).json()
    assert answer["model"] == "tiny" and answer["classes"] == ["ant", "bee", "cat"]
    assert answer["task"] == "single_label" and answer["multi_label"] is False and answer["top_k"] == 2


def test_the_page_and_its_assets_are_served_without_any_external_resource(server: tuple[str, object]) -> None:
    page = httpx.get(f"{server[0]}/", timeout=TIMEOUT)
    assert page.status_code == 200 and 'id="files"' in page.text
    for asset in ("serve.js", "style.css"):
        assert httpx.get(f"{server[0]}/static/{asset}", timeout=TIMEOUT).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text


def test_an_image_gets_its_label_probability_and_top_k(server: tuple[str, object], trained_app_run: Path) -> None:
    image = (trained_app_run.parent / "images" / "valid" / "bee" / "bee_0.png").read_bytes()
    response = post_files(server[0], [("bee_0.png", image)])
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert prediction["file"] == "bee_0.png" and prediction["label"] in ("ant", "bee", "cat")
    assert prediction["top_k"][0]["label"] == prediction["label"]
    assert len(prediction["top_k"]) == 2 and prediction["top_k"][0]["probability"] == prediction["probability"]


def test_predictions_equal_the_predict_command(server: tuple[str, object], learner: object,
                                               trained_app_run: Path) -> None:
    path = trained_app_run.parent / "images" / "valid" / "cat" / "cat_1.png"
    (prediction,) = post_files(server[0], [("cat_1.png", path.read_bytes())]).json()["predictions"]
    label, index, probs = learner.predict(path)  # type: ignore[attr-defined]
    assert prediction["label"] == label and prediction["probability"] == pytest.approx(float(probs[index]), abs=1e-6)


def test_an_undecodable_file_gets_an_error_entry_and_the_others_their_predictions(
        server: tuple[str, object], trained_app_run: Path) -> None:
    image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
    response = post_files(server[0], [("notes.txt", b"not an image"), ("ant.png", image)])
    assert response.status_code == 200
    bad, good = response.json()["predictions"]
    assert bad["file"] == "notes.txt" and "not a readable image" in bad["error"] and bad["label"] is None
    assert tempfile.gettempdir() not in bad["error"]  # the temporary copy's path is not shown
    assert good["file"] == "ant.png" and "label" in good


def test_an_upload_in_a_format_outside_the_supported_ones_is_refused_unread(
        server: tuple[str, object], trained_app_run: Path) -> None:
    # An EPS named .png: Pillow would hand it to Ghostscript where installed. It is refused by its content.
    import io

    from PIL import Image

    eps = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(eps, format="EPS")
    image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
    response = post_files(server[0], [("photo.png", eps.getvalue()), ("ant.png", image)])
    assert response.status_code == 200
    bad, good = response.json()["predictions"]
    assert "not one of the supported formats (JPEG, PNG" in bad["error"] and bad["label"] is None
    assert tempfile.gettempdir() not in bad["error"] and "label" in good


def test_an_empty_upload_says_it_is_empty(server: tuple[str, object], trained_app_run: Path) -> None:
    """A 0-byte file (a placeholder of a cloud folder, a failed save) was "not an image, or not one of the
    supported formats", which sends the user looking for a format problem."""
    image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
    response = post_files(server[0], [("photo.jpg", b""), ("ant.png", image)])
    assert response.status_code == 200
    empty, good = response.json()["predictions"]
    assert "photo.jpg is empty (0 bytes)" in empty["error"] and "format" not in empty["error"]
    assert tempfile.gettempdir() not in empty["error"] and good["error"] is None


def test_no_readable_file_is_422_with_a_json_message_and_the_server_keeps_serving(
        server: tuple[str, object], trained_app_run: Path) -> None:
    truncated = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_1.png").read_bytes()[:60]
    response = post_files(server[0], [("a.png", truncated), ("b.jpg", b"")])
    assert response.status_code == 422
    assert "no uploaded file could be read" in response.json()["detail"]
    assert [entry["file"] for entry in response.json()["predictions"]] == ["a.png", "b.jpg"]
    missing = httpx.post(f"{server[0]}/predict", timeout=TIMEOUT)
    assert missing.status_code == 422 and "detail" in missing.json()
    assert httpx.get(f"{server[0]}/health", timeout=TIMEOUT).status_code == 200



@pytest.mark.parametrize("top_k", ["\u00b2", "\u0663", "9" * 5000, "-1", "1.5", " 2"])
def test_a_top_k_that_is_no_plain_whole_number_is_422_not_a_500(server: tuple[str, object], top_k: str) -> None:
    """str.isdigit() accepts a superscript two and an Arabic-Indic three, and int() refuses a number of 5000
    digits: each must be a 422 that names the value, like top_k=0."""
    response = httpx.post(f"{server[0]}/predict", params={"top_k": top_k}, files=[("file", ("a.png", b""))],
                          timeout=TIMEOUT)
    assert response.status_code == 422 and "top_k must be a whole number" in response.json()["detail"]

def test_sixteen_concurrent_clients_share_batches(server: tuple[str, object], trained_app_run: Path) -> None:
    url, app = server
    images = sorted((trained_app_run.parent / "images" / "valid").rglob("*.png"))
    batcher = app.state.batcher  # type: ignore[attr-defined]
    calls_before = len(batcher.batch_sizes)

    def one(path: Path) -> tuple[str, str]:
        answer = post_files(url, [(path.name, path.read_bytes())])
        return path.name, answer.json()["predictions"][0]["file"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, (images * 2)[:16]))
    assert all(sent == received for sent, received in answers)  # each client got its own file's answer
    sizes = batcher.batch_sizes[calls_before:]
    assert sum(sizes) == 16 and max(sizes) > 1


def test_a_file_over_the_limit_is_413(learner: object, tmp_path: Path) -> None:
    big = write_png(tmp_path / "big.png", (10, 10, 10), size=(400, 400)).read_bytes()
    app = create_app(learner, "tiny", ServeSettings(max_upload_mb=0.01))
    with serving(app) as url:
        response = post_files(url, [("big.png", big)])
        assert response.status_code == 413 and "big.png" in response.json()["detail"]
        assert "--max-upload-mb" in response.json()["detail"]


def test_uploads_live_in_a_temporary_folder_removed_after_the_request(learner: object, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import unfreeze.apps.serve as serve_module

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[tuple[Path, bool]] = []  # each file the model read, and whether it existed then
    real_predict_batch = serve_module.predict_batch

    def spy(model: object, paths: list[Path], **kwargs: object) -> object:
        seen.extend((Path(path), Path(path).is_file()) for path in paths)
        return real_predict_batch(model, paths, **kwargs)

    monkeypatch.setattr(serve_module, "predict_batch", spy)
    image = write_png(tmp_path / "x.png", (200, 30, 30)).read_bytes()
    with serving(create_app(learner, "tiny")) as url:
        answer = post_files(url, [("../../evil.png", image), ("/etc/passwd", image)])
    assert answer.status_code == 200 and [entry["file"] for entry in answer.json()["predictions"]] == [
        "../../evil.png", "/etc/passwd"]
    # Written inside a temporary folder under the temp dir, under names of the server's own making...
    assert [(path.parent.parent, path.name, existed) for path, existed in seen] == [
        (scratch, "000.png", True), (scratch, "001", True)]
    assert seen[0][0].parent.name.startswith("unfreeze-serve-")
    # ...and removed after the request; nothing lands where the client's names point.
    assert list(scratch.iterdir()) == [] and not (tmp_path / "evil.png").exists()


def test_a_token_is_required_when_set(learner: object, tmp_path: Path) -> None:
    image = write_png(tmp_path / "x.png", (200, 30, 30)).read_bytes()
    with serving(create_app(learner, "tiny", ServeSettings(token="s3cret"))) as url:
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).status_code == 401
        refused = post_files(url, [("x.png", image)], headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and "Bearer" in refused.json()["detail"]
        accepted = post_files(url, [("x.png", image)], headers={"Authorization": "Bearer s3cret"})
        assert accepted.status_code == 200
        assert httpx.get(f"{url}/", timeout=TIMEOUT).status_code == 200  # the page itself holds no data


def _planet_learner(tmp_path: Path) -> tuple[Path, Learner]:
    """8 images tagged 'road' or 'haze water' (planet/labels.csv) and an untrained multi-label learner on them."""
    root = tmp_path / "planet"
    rows = ["file,tags"]
    for index in range(8):
        write_png(root / f"{index}.png", (200, 40 * index % 255, 30), seed=index)
        rows.append(f"{index}.png,{'haze water' if index % 2 else 'road'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(root, "labels.csv", label_delim=" ", size=16, bs=4, valid_pct=0.25, seed=0,
                                    num_workers=0)
    return root, vision_learner(dls, "test_resnet", pretrained=False, seed=0, device="cpu", quiet=True)


@pytest.mark.filterwarnings("ignore::unfreeze.data.DataWarning")  # 8 images: a class may miss the valid set
def test_a_multi_label_model_answers_its_label_set(tmp_path: Path) -> None:
    root, learn = _planet_learner(tmp_path)
    with serving(create_app(learn, "planet", ServeSettings(top_k=3))) as url:
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).json()["multi_label"] is True
        (prediction,) = post_files(url, [("0.png", (root / "0.png").read_bytes())]).json()["predictions"]
    assert isinstance(prediction["label"], list) and isinstance(prediction["probability"], list)
    assert len(prediction["label"]) == len(prediction["probability"])
    assert all(probability >= 0.5 for probability in prediction["probability"])
    assert sorted(entry["label"] for entry in prediction["top_k"]) == ["haze", "road", "water"]


@pytest.mark.filterwarnings("ignore::unfreeze.data.DataWarning")
def test_a_multi_label_models_health_names_its_decision_thresholds(tmp_path: Path) -> None:
    """/health of a multi-label model said multi_label: true and nothing of the thresholds its answers are
    decided at (a tuned one, or one per class): a client could not tell why a 0.45 class was left out."""
    _, learn = _planet_learner(tmp_path)
    learn.task = MultiLabel(threshold=(0.3, 0.2, 0.7))
    with serving(create_app(learn, "planet", ServeSettings(top_k=3))) as url:
        health = httpx.get(f"{url}/health", timeout=TIMEOUT).json()
    assert health["decision_threshold"] == {"haze": 0.3, "road": 0.2, "water": 0.7}


def test_settings_refuse_bad_values() -> None:
    from unfreeze.apps import AppError

    with pytest.raises(AppError, match="--top-k"):
        ServeSettings(top_k=0)
    with pytest.raises(AppError, match="--max-upload-mb"):
        ServeSettings(max_upload_mb=0)
    with pytest.raises(AppError, match="--token"):
        ServeSettings(token=" ")


def test_a_runtime_backed_server_answers_as_the_pytorch_one(learner: object, server: tuple[str, object],
                                                              trained_app_run: Path) -> None:
    pytest.importorskip("onnxruntime")
    from unfreeze.inference.runtime import runtime_predictor

    predictor = runtime_predictor(learner, trained_app_run / "model.unfreeze", "onnx")
    app = create_app(predictor, "tiny", ServeSettings(top_k=2, batching=BatchSettings(window_ms=100)))
    files = [(path.name, path.read_bytes()) for path in sorted((trained_app_run.parent / "images" / "valid").rglob(
        "*.png"))[:4]]
    with serving(app) as url:
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).json()["runtime"] == "onnx"
        found = post_files(url, files).json()["predictions"]
    assert httpx.get(f"{server[0]}/health", timeout=TIMEOUT).json()["runtime"] == "torch"
    expected = post_files(server[0], files).json()["predictions"]
    assert [row["label"] for row in found] == [row["label"] for row in expected]
    for mine, theirs in zip(found, expected, strict=True):
        assert mine.keys() == theirs.keys() and mine["probability"] == pytest.approx(theirs["probability"], abs=1e-3)
