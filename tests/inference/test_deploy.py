"""Deployment exports: uint8 in, probabilities out, equal to PyTorch, in every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unfreeze.inference.deploy import (
    FORMATS,
    check_export,
    deployable_module,
    export_deployable,
    load_deployed,
    load_deployed_outputs,
    quantize_int8,
    quantize_onnx_int8,
    quantize_openvino_int8,
    validation_images,
)
from unfreeze.train.learner import Learner


def test_the_wrapped_module_equals_the_learners_own_predictions(sample_learner: Learner) -> None:
    images, _ = validation_images(sample_learner.dls.valid, limit=8)
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    with torch.no_grad():
        wrapped = deployable_module(sample_learner)(images)
    probs, _ = sample_learner.get_preds(dl=sample_learner.dls.test_dl(list(images)))
    torch.testing.assert_close(wrapped, probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wrapped.sum(dim=1), torch.ones(8))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_takes_uint8_and_matches_pytorch(sample_learner: Learner, tmp_path: Path, fmt: str) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    written = export_deployable(sample_learner, tmp_path / "deploy", fmt)
    assert [path.name for path in written] == list(FORMATS[fmt]) and all(path.stat().st_size > 0 for path in written)
    assert sorted(path.name for path in (tmp_path / "deploy").iterdir()) == sorted(FORMATS[fmt])  # no leftovers
    images, _ = validation_images(sample_learner.dls.valid, limit=5)  # an odd batch: the batch axis is dynamic
    difference, probs, _ = check_export(sample_learner, written[0], fmt, images)
    assert difference < 1e-3  # float32 kernels of different runtimes differ in the last digits
    assert probs.shape == (5, len(sample_learner.dls.vocab))
    run = load_deployed(written[0], fmt)
    assert np.allclose(run(images[:1].numpy()).sum(), 1.0, atol=1e-4)


def test_int8_onnx_is_smaller_and_close(sample_learner: Learner, tmp_path: Path) -> None:
    onnx_path = export_deployable(sample_learner, tmp_path, "onnx")[0]
    quantized = quantize_onnx_int8(onnx_path)
    assert quantized.name == "model.int8.onnx" and quantized.stat().st_size < onnx_path.stat().st_size
    images, _ = validation_images(sample_learner.dls.valid, limit=4)
    difference, _, _ = check_export(sample_learner, quantized, "onnx", images)
    assert difference < 0.5


def test_int8_openvino_quantizes_with_calibration_images_and_stays_close(sample_learner: Learner,
                                                                        tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    xml = export_deployable(sample_learner, tmp_path, "openvino")[0]
    images, _ = validation_images(sample_learner.dls.valid, limit=8)
    quantized = quantize_openvino_int8(xml, images)
    assert quantized.name == "model.int8.xml" and quantized.with_suffix(".bin").stat().st_size > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin", "model.int8.bin", "model.int8.xml",
                                                                "model.xml"]  # no temporary folder left
    difference, probs, _ = check_export(sample_learner, quantized, "openvino", images)
    assert difference < 0.5 and probs.shape == (8, len(sample_learner.dls.vocab))
    with pytest.raises(ValueError, match="needs calibration images"):
        quantize_openvino_int8(xml, images[:0])
    with pytest.raises(ValueError, match="int8 exists for onnx and openvino, not 'torchscript'"):
        quantize_int8(xml, "torchscript", images)


def test_unknown_format_is_refused(sample_learner: Learner, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="onnx, torchscript, openvino"):
        export_deployable(sample_learner, tmp_path, "tflite")


def test_a_regression_model_exports_its_numbers_not_probabilities(tmp_path: Path) -> None:
    """The deployment graphs ended in a softmax, so a regression model's single output came out as 1.0 for
    every image; then regression exports were refused. Now the graphs output the numbers (`values`) the
    PyTorch model gives, in the uint8 deployment files and the float ONNX alike."""
    import onnxruntime
    from PIL import Image

    from unfreeze.data import ImageDataLoaders, RegressionBlock
    from unfreeze.inference.export import export_onnx
    from unfreeze.train.builders import vision_learner

    rows = ["file,value"]
    for index, value in enumerate(np.linspace(0.1, 0.9, 12)):
        Image.new("RGB", (16, 16), (int(value * 255),) * 3).save(tmp_path / f"{index:02d}.png")
        rows.append(f"{index:02d}.png,{value:.3f}")
    (tmp_path / "targets.csv").write_text("\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(tmp_path, "targets.csv", y_block=RegressionBlock, size=16, bs=4, seed=0,
                                    num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, seed=0, device="cpu", quiet=True)
    learn.fit(1)
    images = torch.stack([torch.full((3, 16, 16), int(value * 255), dtype=torch.uint8)
                          for value in np.linspace(0.1, 0.9, 6)])
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (dls.valid.mean, dls.valid.std))
    with torch.no_grad():
        expected = learn.model.eval()((images.float() / 255 - mean) / std).numpy()
    assert expected.shape == (6, 1) and np.ptp(expected) > 1e-4  # numbers that differ, not a constant 1.0
    for fmt in ("onnx", "torchscript"):
        (path,) = export_deployable(learn, tmp_path / fmt, fmt)
        (found,) = load_deployed_outputs(path, fmt)(images.numpy())
        assert np.abs(found - expected).max() < 1e-4
    session = onnxruntime.InferenceSession(str(export_onnx(learn, tmp_path / "model.onnx")))
    assert [output.name for output in session.get_outputs()] == ["values"]
    (found,) = session.run(None, {"image": images.float().numpy() / 255})
    assert np.abs(found - expected).max() < 1e-4
