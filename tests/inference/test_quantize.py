"""int8 copies calibrated on training images: ONNX Runtime static QDQ per-channel, the comparison with
float32 (accuracy, latency, size in MiB) and the recommendation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unfreeze.inference.deploy import check_export, export_deployable, validation_images
from unfreeze.inference.quantize import (
    MAX_ACCURACY_DROP,
    calibration_images,
    compare_int8,
    quantize,
    quantize_onnx_static,
    recommend,
)
from unfreeze.train.learner import Learner

onnx = pytest.importorskip("onnx")


def test_calibration_images_are_the_export_input_spread_over_every_class(sample_learner: Learner) -> None:
    loader = sample_learner.dls.train
    images = calibration_images(loader, limit=40)
    assert images.dtype == torch.uint8 and images.shape == (40, 3, 32, 32)
    # Prepared exactly as the deployment input: the first item equals validation_images' first one.
    first, _ = validation_images(loader, limit=1)
    assert torch.equal(images[0], first[0])
    # Spread over the items: the sample's folders list the items class by class, and the first 40 would
    # be one or two classes only.
    targets = loader.dataset.targets
    chosen = np.linspace(0, len(targets) - 1, num=40).astype(int)
    assert len(set(targets[chosen].tolist())) == len(sample_learner.dls.vocab)
    assert len(set(targets[:40].tolist())) < len(sample_learner.dls.vocab)


def test_static_onnx_int8_is_qdq_per_channel_and_close(sample_learner: Learner, tmp_path: Path) -> None:
    path = export_deployable(sample_learner, tmp_path, "onnx")[0]
    calibration = calibration_images(sample_learner.dls.train, limit=16)
    seen: list[tuple[int, int]] = []
    quantized = quantize_onnx_static(path, calibration, progress=lambda done, total: seen.append((done, total)))
    assert quantized.name == "model.int8.onnx" and quantized.stat().st_size < path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx", "model.onnx"]  # no scratch left
    assert seen[-1] == (16, 16)  # every calibration image was read
    graph = onnx.load(str(quantized)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # the QDQ format
    # Per-channel weights: a convolution's weight scales are a vector (one per output channel).
    scales = {init.name: init for init in graph.initializer}
    weight_scales = [scales[node.input[1]] for node in graph.node if node.op_type == "DequantizeLinear"
                     and node.input[1] in scales and len(scales[node.input[1]].dims) == 1
                     and scales[node.input[1]].dims[0] > 1]
    assert weight_scales
    images, _ = validation_images(sample_learner.dls.valid, limit=8)
    difference, probs, _ = check_export(sample_learner, quantized, "onnx", images)
    assert difference < 0.5 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="needs calibration images"):
        quantize_onnx_static(path, calibration[:0])
    with pytest.raises(ValueError, match="int8 exists for onnx and openvino, not 'torchscript'"):
        quantize(path, "torchscript", calibration)


def test_the_comparison_counts_float32_files_only_in_the_float32_size(sample_learner: Learner,
                                                                      tmp_path: Path) -> None:
    files = export_deployable(sample_learner, tmp_path, "onnx")
    images, targets = validation_images(sample_learner.dls.valid, limit=16)
    _, probs, _ = check_export(sample_learner, files[0], "onnx", images)
    comparison = compare_int8(sample_learner, files, "onnx", images, targets,
                              calibration_images(sample_learner.dls.train, limit=16), False, probs)
    assert comparison.size_mib_fp32 == pytest.approx(files[0].stat().st_size / 2**20)
    assert comparison.size_mib_int8 == pytest.approx((tmp_path / "model.int8.onnx").stat().st_size / 2**20)
    assert comparison.accuracy_fp32 is not None and comparison.accuracy_int8 is not None
    assert comparison.latency_ms_fp32 > 0 and comparison.latency_ms_int8 > 0
    assert comparison.recommended in ("int8", "float32") and comparison.reason
    assert comparison.to_dict()["files"] == ["model.int8.onnx"]


def test_int8_is_recommended_only_when_it_keeps_accuracy_and_is_faster() -> None:
    assert recommend(0.82, 0.73, 4.0, 40.0) == (
        "float32", "int8 loses 9.0 accuracy points (more than 1); use the float32 model")
    assert recommend(0.82, 0.82 - MAX_ACCURACY_DROP * 1.5, 4.0, 2.0)[0] == "float32"
    slower = recommend(0.82, 0.82, 4.0, 4.5)
    assert slower[0] == "float32" and "not faster" in slower[1]
    assert recommend(0.82, 0.815, 4.0, 2.0)[0] == "int8"
    unlabelled = recommend(None, None, 4.0, 2.0)
    assert unlabelled[0] == "int8" and "not measured" in unlabelled[1]


def test_int8_that_changes_the_unknown_flags_is_not_recommended(sample_learner: Learner, tmp_path: Path) -> None:
    """The int8 file's ood_score is measured too: one that flags other images as unknown than float32 does
    (here every image: its scores are far above the threshold) must not be the recommended file."""
    import copy

    from unfreeze.inference.deploy import load_deployed_outputs
    from unfreeze.inference.predict import trust_of

    learner = copy.deepcopy(sample_learner)  # the session's learner stays uncalibrated
    learner.calibrate()
    files = export_deployable(learner, tmp_path, "onnx")
    images, targets = validation_images(learner.dls.valid, limit=32)
    _, probs, _ = check_export(learner, files[0], "onnx", images)
    comparison = compare_int8(learner, files, "onnx", images, targets,
                              calibration_images(learner.dls.train, limit=16), False, probs)
    threshold = trust_of(learner).threshold
    flags = {name: load_deployed_outputs(tmp_path / name, "onnx")(images.numpy())[1] > threshold
             for name in ("model.onnx", "model.int8.onnx")}
    changed = float(np.mean(flags["model.onnx"] != flags["model.int8.onnx"]))
    assert comparison.unknown_changed == pytest.approx(changed)
    assert changed > MAX_ACCURACY_DROP  # this tiny random model's int8 scores are far off
    assert comparison.recommended == "float32" and "unknown" in comparison.reason
    assert recommend(0.82, 0.82, 4.0, 2.0, unknown_changed=0.2) == (
        "float32", "int8 changes the unknown flag of 20.0% of the validation images (more than 1%); use the "
        "float32 model")
    assert recommend(0.82, 0.82, 4.0, 2.0, unknown_changed=0.0)[0] == "int8"
