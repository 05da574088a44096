"""`unfreeze export RUN --format F --out DIR`: the deployment file, its printed check and model_card.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import TINY, run_user_error
from unfreeze.cli import main
from unfreeze.inference.deploy import load_deployed


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_checks_itself_and_writes_a_model_card(trained_app_run: Path, tmp_path: Path, fmt: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["export", str(trained_app_run), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # The run has an unknown score: the number is the largest difference of either output, and says so
    # (an ood_score is no probability: its difference may be far above a probability's).
    assert ("Check against PyTorch on 12 validation images: largest difference of a probability or the "
            "ood_score") in printed
    card = (out / "model_card.md").read_text()
    assert "the largest difference of a probability or the ood_score is" in card
    for heading in ("## Classes", "## Input and output", "## Metrics", "## Data", "## Recipe",
                    "## Check against PyTorch", "## Usage"):
        assert heading in card
    assert "`ant`, `bee`, `cat`" in card and "uint8 RGB, shape [N, 3, 16, 16]" in card
    model = out / ("model.onnx" if fmt == "onnx" else "model.pt")
    probabilities = load_deployed(model, fmt)(np.zeros((3, 3, 16, 16), np.uint8))
    assert probabilities.shape == (3, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_int8_reports_accuracy_latency_size_and_the_recommended_model(trained_app_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out), "--int8"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("int8 ("))
    assert line.startswith("int8 (ONNX Runtime static quantization (QDQ, per-channel") and "model.int8.onnx" in line
    assert "calibrated on 24 training images" in printed and "accuracy " in printed and "→" in printed
    assert "ms int8 vs" in printed and "Recommended: the " in printed
    # Progress in a pipe: what runs, then the calibration a line per tenth.
    assert "Writing onnx into" in printed and "int8 calibration: 24/24 images" in printed
    card = (out / "model_card.md").read_text()
    assert (out / "model.int8.onnx").is_file() and "## int8" in card and "Recommended: the " in card
    # The float32 size is model.onnx's alone (it counted the int8 file too), in MiB labelled MiB.
    fp32, int8 = ((out / name).stat().st_size / 2**20 for name in ("model.onnx", "model.int8.onnx"))
    assert f"size: {int8:.1f} MiB int8 vs {fp32:.1f} MiB float32" in card and " MB" not in card


def test_openvino_int8_is_calibrated_on_training_images_and_reports_the_accuracy_change(
        trained_app_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nncf")
    # OpenVINO's PyTorch frontend cannot convert test_resnet's pooling at 16 px: this run trains at 32.
    run, out = tmp_path / "run32", tmp_path / "deploy"
    # --no-upscale: test_resnet's map is 1×1 at 32 px, and the deployed input must stay 32 px here.
    sized = [*TINY[:TINY.index("--size")], "--size", "32", "--no-upscale", *TINY[TINY.index("--size") + 2:]]
    assert main(["train", str(trained_app_run.parent / "images"), *sized, "--out", str(run), "--quiet"]) == 0
    assert main(["export", str(run), "--format", "openvino", "--out", str(out), "--int8"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("int8 ("))
    assert line.startswith("int8 (NNCF post-training quantization") and "model.int8.xml" in line
    assert "accuracy " in printed and "→" in printed and "Recommended: the " in printed
    assert sorted(path.name for path in out.iterdir()) == ["model.bin", "model.int8.bin", "model.int8.xml",
                                                          "model.xml", "model_card.md", "unfreeze_export.json"]
    card = (out / "model_card.md").read_text()
    assert "calibrated on 24 training images" in card and "(int8), a change of" in card  # 24 training images
    probabilities = load_deployed(out / "model.int8.xml", "openvino")(np.zeros((2, 3, 32, 32), np.uint8))
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


def test_a_bare_model_file_is_checked_on_random_images(trained_app_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "alone.unfreeze"
    model.write_bytes((trained_app_run / "model.unfreeze").read_bytes())
    assert main(["export", str(model), "--format", "onnx", "--out", str(tmp_path / "deploy")]) == 0
    assert "16 random images" in capsys.readouterr().out
    assert main(["export", str(model), "--format", "onnx", "--out", str(tmp_path / "deploy"), "--quiet"]) == 0
    assert "Writing" not in capsys.readouterr().out
    assert "random images (no validation data was available)" in (tmp_path / "deploy" / "model_card.md").read_text()


def test_wrong_option_combinations_are_user_errors(trained_app_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = str(trained_app_run)
    assert "--format needs --out" in run_user_error(["export", run, "--format", "onnx"], capsys)
    assert "go with --format" in run_user_error(["export", run, "--out", str(tmp_path)], capsys)
    assert "exists for --format onnx and openvino, not torchscript" in run_user_error(["export", run, "--format",
                                                                                       "torchscript", "--out",
                                                    str(tmp_path), "--int8"], capsys)
    assert "Use one of them" in run_user_error(["export", run, "--format", "onnx", "--out", str(tmp_path),
                                                "--onnx"], capsys)


def test_a_model_file_no_export_wrote_is_never_replaced(trained_app_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.pt").write_bytes(b"the user's own TorchScript model")
    line = run_user_error(["export", str(trained_app_run), "--format", "torchscript", "--out", str(out)], capsys)
    assert "already holds model.pt, not written by 'unfreeze export'" in line
    assert (out / "model.pt").read_bytes() == b"the user's own TorchScript model"
    assert not (out / "model_card.md").exists()
    # A folder an earlier export wrote (with its model card) is exported into again.
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(tmp_path / "deploy")]) == 0
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(tmp_path / "deploy")]) == 0


def test_the_plain_export_command_still_works(trained_app_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained_app_run)]) == 0
    assert "test_resnet, 3 classes" in capsys.readouterr().out


def test_the_model_card_is_enough_to_deploy_from(trained_app_run: Path, tmp_path: Path) -> None:
    """Issue 25: the card said nothing of the interpolation or RGB conversion, had no preprocessing code,
    latency or per-class scores, and showed the training machine's absolute data path."""
    import re

    from PIL import Image

    from unfreeze import load_learner
    from unfreeze.inference.deploy import validation_images

    out = tmp_path / "deploy"
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out)]) == 0
    card = (out / "model_card.md").read_text()
    assert "**bilinear** interpolation" in card and "must be converted to RGB" in card
    assert "layout NCHW (channels first), channel order RGB, values 0-255" in card
    assert "| ant | " in card and "| class | precision | recall | F1 | support |" in card
    assert re.search(r"## Latency\n\nMeasured on the exporting machine \(.+\) .* ms for one image", card)
    assert str(trained_app_run.parent) not in card and "/tmp" not in card and str(tmp_path) not in card
    # The card's own preprocessing code, run on a grey image with alpha, a wider RGB photo and a 16-bit grey
    # PNG (the card's code clipped it to white where training scales 65535 to 255), gives the pixels that
    # unfreeze's own pipeline gives, and the exported file the model's probabilities.
    code = re.search(r"## Usage\n.*?```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(code.replace('batch = preprocess("photo.jpg")', "").split("import onnxruntime")[0], namespace)
    grey = tmp_path / "grey.png"
    Image.new("LA", (30, 20), (90, 128)).save(grey)
    wide = tmp_path / "wide.jpg"
    Image.effect_noise((41, 23), 60).convert("RGB").save(wide)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.linspace(0, 65535, 30 * 20).reshape(20, 30).astype(np.uint16)).save(sixteen)
    strip = tmp_path / "strip.png"  # 1 px high: training keeps only its centre, 8 times its short side
    Image.effect_noise((300, 1), 60).convert("RGB").save(strip)
    learn = load_learner(trained_app_run / "model.unfreeze")
    deployed = load_deployed(out / "model.onnx", "onnx")
    for picture in (grey, wide, sixteen, strip):
        batch = namespace["preprocess"](picture)
        expected, _ = validation_images(learn.dls.test_dl([picture]))
        assert batch.dtype == np.uint8 and np.array_equal(batch, expected.numpy()), picture
        probabilities = deployed(batch)[0]
        assert np.allclose(probabilities, learn.predict(picture)[2].numpy(), atol=1e-5)
    # The strip is resized to at most 8 times the item size, as training does, not to item_size x 300 times it.
    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def recorded(image: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        sizes.append(tuple(size))
        return resize(image, size, *args, **kwargs)

    Image.Image.resize = recorded  # type: ignore[method-assign]
    try:
        namespace["preprocess"](strip)
    finally:
        Image.Image.resize = resize  # type: ignore[method-assign]
    assert sizes and max(max(size) for size in sizes) <= 8 * learn.dls.valid.dataset.item_size, sizes


def test_a_multi_label_model_card_names_the_threshold_the_model_decides_with(tmp_path: Path) -> None:
    """The card said "0.5 threshold" whatever threshold train had chosen on the validation set."""
    import json

    from app_helpers import write_png

    root = tmp_path / "planet"
    colors = {"red": (220, 40, 40), "green": (40, 220, 40), "blue": (40, 40, 220)}
    rows = ["image,tags"]
    for index in range(24):
        names = [name for bit, name in enumerate(colors) if (index >> bit) & 1]
        color = tuple(int(np.mean([colors[name][c] for name in names] or [128])) for c in range(3))
        rows.append(f"{write_png(root / f'{index:02d}.png', color, seed=index).name},{' '.join(names)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    run, out = tmp_path / "run", tmp_path / "deploy"
    assert main(["train", str(root), *TINY, "--csv", "labels.csv", "--multi-label", "--out", str(run),
                 "--quiet"]) == 0
    threshold = json.loads((run / "summary.json").read_text())["threshold"]["threshold"]
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    card = (out / "model_card.md").read_text()
    assert f"sigmoid per class, a class at or above {threshold:.4g}" in card
    assert threshold == 0.5 or "0.5 threshold" not in card


def test_a_multi_label_model_card_names_the_exported_epoch_and_its_thresholds_f1(
        trained_app_run: Path, tmp_path: Path) -> None:
    """A multi-label card read '- final epoch: ... f1_multi 0.5556' beside a per-class table whose macro F1 was
    0.7407: the row was the kept epoch's, scored at 0.5, while the model decides at the tuned thresholds."""
    images = trained_app_run.parent / "images"
    rows = ["file,labels"]
    for index, path in enumerate(sorted(images.rglob("*.png"))):
        rows.append(f"{path.relative_to(images)},{path.parent.name}{' shiny' if index % 2 else ''}")
    data = tmp_path / "images"
    shutil.copytree(images, data)
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    run, out = tmp_path / "ml", tmp_path / "deploy"
    assert main(["train", str(data), *TINY, "--epochs", "2", "--csv", "labels.csv", "--multi-label",
                 "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--quiet"]) == 0
    metrics = (out / "model_card.md").read_text().split("## Metrics")[1].split("##")[0]
    epoch = summary["final"]["epoch"]
    assert "final epoch" not in metrics and f"- epoch {epoch}, the exported one" in metrics
    threshold = summary["threshold"]
    assert f"macro F1 {threshold['f1']:.4f}" in metrics and f"at {threshold['previous']:.4g}" in metrics
