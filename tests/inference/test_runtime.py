"""Predicting through ONNX Runtime and OpenVINO: the same rows as PyTorch, the conversion cached and checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from unfreeze.inference import predict_batch
from unfreeze.inference.runtime import RUNTIMES, default_runtime, installed_runtimes, runtime_predictor
from unfreeze.train.learner import Learner

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(sample_learner: Learner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_learner.export(tmp_path_factory.mktemp("runtime") / "model.unfreeze")


def images(learner: Learner) -> list[Path]:
    return [path for path, _ in learner.dls.valid.dataset.items[::20]]


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_runtime_gives_the_rows_pytorch_gives(sample_learner: Learner, exported: Path, runtime: str) -> None:
    if runtime not in installed_runtimes():
        pytest.skip(f"{runtime} is not installed")
    predictor = runtime_predictor(sample_learner, exported, runtime)
    assert predictor.runtime == runtime and predictor.max_difference <= 1e-3
    expected = list(predict_batch(sample_learner, images(sample_learner), bs=4, top_k=3))
    found = list(predict_batch(predictor, images(sample_learner), bs=4, top_k=3))
    assert [row["label"] for row in found] == [row["label"] for row in expected]
    for mine, theirs in zip(found, expected, strict=True):
        assert mine["prob"] == pytest.approx(theirs["prob"], abs=1e-3)
        assert [label for label, _ in mine["top_k"]] == [label for label, _ in theirs["top_k"]]


def test_the_conversion_is_cached_beside_the_export_until_it_changes(sample_learner: Learner, exported: Path,
                                                                     tmp_path: Path) -> None:
    cached = exported.with_name(".model.runtime.onnx")
    runtime_predictor(sample_learner, exported, "onnx")
    assert cached.is_file() and cached.with_suffix(".json").is_file()
    first = cached.stat().st_mtime_ns
    runtime_predictor(sample_learner, exported, "onnx")
    assert cached.stat().st_mtime_ns == first  # reused, not converted again
    other = sample_learner.export(tmp_path / "model.unfreeze")
    (tmp_path / ".model.runtime.onnx").write_bytes(cached.read_bytes())
    (tmp_path / ".model.runtime.json").write_text('{"sha256": "an older export"}')
    runtime_predictor(sample_learner, other, "onnx")
    assert '"sha256": "an older export"' not in (tmp_path / ".model.runtime.json").read_text()


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_a_damaged_cached_conversion_is_converted_again(sample_learner: Learner, tmp_path: Path,
                                                        damage: str) -> None:
    """A cache file cut short (a full disk, a copy interrupted) or altered is not the export's conversion:
    it is made again, not blamed on the model ("onnx cannot run this model") nor refused forever."""
    exported = sample_learner.export(tmp_path / "model.unfreeze")
    cached = exported.with_name(".model.runtime.onnx")
    runtime_predictor(sample_learner, exported, "onnx")
    good = cached.read_bytes()
    if damage == "truncated":
        cached.write_bytes(good[:1000])
    else:  # a weight's byte near the end: the file still parses, its answers differ
        cached.write_bytes(good[:-100] + bytes([good[-100] ^ 0x40]) + good[-99:])
    predictor = runtime_predictor(sample_learner, exported, "onnx")
    assert predictor.runtime == "onnx" and predictor.max_difference <= 1e-3
    assert cached.read_bytes() == good

@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_an_unwritable_run_folder_leaves_no_conversion_behind(sample_learner: Learner, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    """Where the cache cannot be written beside the export (a read-only folder; here a folder in the way),
    the conversion goes into a temporary folder: it was kept there, one model-sized copy per command."""
    if runtime not in installed_runtimes():
        pytest.skip(f"{runtime} is not installed")
    exported = sample_learner.export(tmp_path / "model.unfreeze")
    exported.with_name(".model.runtime.onnx").mkdir()  # os.replace onto it fails as a read-only folder would
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    predictor = runtime_predictor(sample_learner, exported, runtime)
    assert predictor.runtime == runtime and predictor.max_difference <= 1e-3
    assert all(row["error"] is None for row in predict_batch(predictor, images(sample_learner)[:2], bs=2))
    assert list(scratch.iterdir()) == []


def test_torch_is_the_learner_itself_and_names_are_checked(sample_learner: Learner, exported: Path) -> None:
    assert runtime_predictor(sample_learner, exported, "torch") is sample_learner
    assert default_runtime() == installed_runtimes()[0] and set(installed_runtimes()) <= set(RUNTIMES)
    with pytest.raises(ValueError, match="runtime must be one of openvino, onnx, torch"):
        runtime_predictor(sample_learner, exported, "tensorrt")


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_runtime_gives_the_unknown_flags_and_scores_pytorch_gives(sample_learner: Learner, tmp_path: Path,
                                                                   runtime: str) -> None:
    """The runtime computes both feature parts (the last layer's input and the middle stage)."""
    import copy

    if runtime not in installed_runtimes():
        pytest.skip(f"{runtime} is not installed")
    learner = copy.deepcopy(sample_learner)  # the session's learner stays uncalibrated
    learner.calibrate()
    assert len(learner.trust.score.parts) == 2
    path = learner.export(tmp_path / "model.unfreeze")
    predictor = runtime_predictor(learner, path, runtime)
    expected = list(predict_batch(learner, images(learner), bs=4))
    found = list(predict_batch(predictor, images(learner), bs=4))
    assert [row["unknown"] for row in found] == [row["unknown"] for row in expected]
    assert [row["ood_score"] for row in found] == pytest.approx([row["ood_score"] for row in expected], rel=1e-3)


def test_by_default_a_runtime_that_cannot_run_the_model_is_passed_over(sample_learner: Learner, exported: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import unfreeze.inference.runtime as runtime_module

    compile_model = runtime_module._compile

    def refuse_openvino(path: Path, runtime: str) -> object:
        if runtime == "openvino":
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:132:\n-- Conversion is failed for: Conv")
        return compile_model(path, runtime)

    monkeypatch.setattr(runtime_module, "installed_runtimes", lambda: ["openvino", "onnx", "torch"])
    monkeypatch.setattr(runtime_module, "_compile", refuse_openvino)
    with pytest.warns(UserWarning, match=r"openvino cannot run this model \(Conversion is failed for: Conv\)"):
        predictor = runtime_predictor(sample_learner, exported)
    assert predictor.runtime == "onnx"
    monkeypatch.setattr(runtime_module, "installed_runtimes", lambda: ["openvino", "torch"])
    with pytest.warns(UserWarning, match="openvino cannot run"):
        assert runtime_predictor(sample_learner, exported) is sample_learner
