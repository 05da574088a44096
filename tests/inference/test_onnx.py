"""ONNX export: parity with PyTorch on real sample images, dynamic batch, opset, optional extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from unfreeze.inference import export_onnx
from unfreeze.train.learner import Learner

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_file(sample_learner: Learner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_learner.export_onnx(tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnxruntime_matches_pytorch_on_sample_images(sample_learner: Learner, onnx_file: Path) -> None:
    loader = sample_learner.dls.valid
    # The ONNX input is what the validation transforms give before normalization: [0, 1] RGB.
    images = loader.decode_uint8(range(0, 200, 5)).float() / 255.0
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"image": images.numpy()})
    expected_probs, _ = sample_learner.get_preds()
    mean, std = torch.tensor(loader.mean).view(1, 3, 1, 1), torch.tensor(loader.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected_logits = sample_learner.model.eval()((images - mean) / std)
    max_diff = (torch.from_numpy(logits) - expected_logits).abs().max().item()
    print(f"\nONNX vs PyTorch max abs diff (logits): {max_diff:.2e}")
    assert max_diff <= 1e-4
    torch.testing.assert_close(torch.from_numpy(probs), expected_probs[::5], atol=1e-4, rtol=0)
    single = session.run(None, {"image": images[:1].numpy()})[0]  # the batch axis is dynamic
    torch.testing.assert_close(torch.from_numpy(single), expected_logits[:1], atol=1e-4, rtol=0)


def test_onnx_file_has_opset_names_and_metadata(sample_learner: Learner, onnx_file: Path) -> None:
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = json.loads({p.key: p.value for p in model.metadata_props}["unfreeze"])
    assert metadata["vocab"] == sample_learner.dls.vocab and metadata["size"] == 32


def test_onnx_opset_below_17_is_refused(sample_learner: Learner, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(sample_learner, tmp_path / "old.onnx", opset=13)
    assert not (tmp_path / "old.onnx").exists()


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_missing_onnx_extras_give_install_hint(sample_learner: Learner, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'unfreeze\[onnx\]'"):
        sample_learner.export_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
