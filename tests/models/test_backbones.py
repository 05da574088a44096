"""Backbone contract: bodies, parameter groups, config round trips, errors for bad names."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn
from torchvision.models import convnext_tiny, resnet18

from unfreeze.models import (
    IMAGENET_MEAN,
    ArchitectureNotRebuildableError,
    TransferModel,
    UnknownArchitectureError,
    create_model,
    model_from_config,
)

TINY_TIMM = ["test_resnet", "test_efficientnet", "test_convnext", "test_vit"]


def assert_contract(model: TransferModel, n_groups: int) -> None:
    """Every parameter is in exactly one group, groups run input → head, the last is the head."""
    names = [name for name, _ in model.named_parameters()]
    flat = [name for group in model.param_groups for name in group]
    assert len(model.param_groups) == n_groups
    assert all(model.param_groups), "no group may be empty"
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    assert model.param_groups[-1] == [f"head.{n}" for n, _ in model.head.named_parameters()]
    assert flat == names, "groups must follow the model's own order, input first"
    json.dumps(model.config())


@pytest.mark.parametrize("arch", TINY_TIMM)
@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_timm_groups(arch: str, n_groups: int) -> None:
    model = create_model(arch, 4, pretrained=False, n_groups=n_groups)
    assert_contract(model, n_groups)
    assert model.weights_source == "random" and model.arch == arch


@pytest.mark.parametrize("arch", TINY_TIMM)
def test_forward_and_stats(arch: str) -> None:
    model = create_model(arch, 4, pretrained=False).eval()
    cfg = timm.models.get_pretrained_cfg(arch)
    assert (model.mean, model.std, model.input_size) == (cfg.mean, cfg.std, cfg.input_size[-1])
    assert model(torch.randn(2, 3, model.input_size, model.input_size)).shape == (2, 4)


def test_resnet34_groups_equal_fastai_split() -> None:
    model = create_model("resnet34", 37, pretrained=False)
    top_level = [sorted({name.split(".")[1] for name in group}) for group in model.param_groups[:2]]
    assert top_level == [["bn1", "conv1", "layer1", "layer2"], ["layer3", "layer4"]]
    assert_contract(model, 3)
    assert model.num_features == 512 and model.head[2].num_features == 1024


def test_two_groups_are_body_and_head() -> None:
    model = create_model("test_resnet", 2, pretrained=False, n_groups=2)
    assert model.param_groups[0] == ["body." + n for n, _ in model.body.named_parameters()]


def test_vit_body_pools_and_head_skips_pooling() -> None:
    model = create_model("test_vit", 3, pretrained=False).eval()
    features = model.body(torch.randn(2, 3, 160, 160))
    assert features.shape == (2, model.num_features)
    assert isinstance(model.head[0], nn.BatchNorm1d)
    assert model.config()["features"] == "pooled"
    assert create_model("test_convnext", 3, pretrained=False).config()["features"] == "map"


def test_cnn_with_layers_after_pooling_keeps_timm_pooling() -> None:
    # mobilenetv3's conv_head runs on pooled features; applying it to the map would be wrong.
    model = create_model("mobilenetv3_small_050", 3, pretrained=False).eval()
    assert model.config()["features"] == "pooled" and model.num_features == 1024
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_torchvision_resnet_constructor() -> None:
    model = create_model(resnet18, 5, pretrained=False, n_groups=3)
    assert_contract(model, 3)
    assert sorted({n.split(".")[1] for n in model.param_groups[0]}) == ["bn1", "conv1", "layer1", "layer2"]
    assert model.arch == "torchvision:resnet18"
    assert (model.mean, model.input_size) == (IMAGENET_MEAN, 224)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_torchvision_convnext_constructor_splits_inside_features() -> None:
    model = create_model(convnext_tiny, 5, pretrained=False, n_groups=5)
    assert_contract(model, 5)
    assert model.arch == "torchvision:convnext_tiny" and model.num_features == 768
    stages = [sorted({int(n.split(".")[2]) for n in group}) for group in model.param_groups[:-1]]
    assert stages == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_module_instances_keep_their_weights() -> None:
    network = resnet18(weights=None)
    model = create_model(network, 3)
    assert model.arch == "custom:ResNet" and model.weights_source == "module:ResNet"
    assert model.body.conv1.weight is network.conv1.weight
    assert_contract(model, 3)
    timm_network = timm.create_model("test_efficientnet", pretrained=False)
    timm_model = create_model(timm_network, 3, n_groups=4)
    assert_contract(timm_model, 4)
    assert timm_model.param_groups[0][0] == "body.conv_stem.weight"


def test_timm_factory_is_a_timm_name() -> None:
    model = create_model(timm.models.resnet18, 2, pretrained=False)
    assert model.arch == "resnet18"


def test_config_round_trip() -> None:
    model = create_model("test_convnext", 6, pretrained=False, n_groups=4, head="linear", n_in=1)
    model.mean, model.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    config = json.loads(json.dumps(model.config()))
    rebuilt = model_from_config(config)
    assert rebuilt.config() == config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.param_groups == model.param_groups
    tv = create_model(resnet18, 2, pretrained=False, ps=0.3)
    assert model_from_config(tv.config()).config() == tv.config()


def test_config_errors() -> None:
    with pytest.raises(ArchitectureNotRebuildableError, match=r"nn\.Module"):
        model_from_config(create_model(resnet18(weights=None), 2).config())
    custom = create_model("test_resnet", 2, pretrained=False, head=nn.Sequential(nn.Flatten(), nn.LazyLinear(2)))
    with pytest.raises(ArchitectureNotRebuildableError, match="head="):
        model_from_config(custom.config())
    rebuilt = model_from_config(
        custom.config(), head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 2))
    )
    assert rebuilt.config()["head"]["kind"] == "custom"
    config = create_model("test_resnet", 2, pretrained=False).config() | {"arch": "resnet3"}
    with pytest.raises(UnknownArchitectureError, match="resnet34"):
        model_from_config(config)
    with pytest.raises(ValueError, match="lacks n_out"):
        model_from_config({"arch": "resnet34"})


def test_unknown_architecture_suggests_names() -> None:
    with pytest.raises(UnknownArchitectureError) as error:
        create_model("resnet3", 2)
    message = str(error.value)
    assert "Unknown architecture 'resnet3'" in message and "resnet34" in message
    assert "timm.list_models('resnet*')" in message
    with pytest.raises(UnknownArchitectureError, match="a1_in1k"):
        create_model("resnet34.nonsense_tag", 2)
    with pytest.raises(UnknownArchitectureError, match="resnet18"):
        create_model("torchvision:resnet81", 2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_groups": 1}, "n_groups must be an int >= 2"),
        ({"n_groups": 7}, "n_groups can be 2 to 6"),
        ({"n_out": 0}, "n_out must be"),
        ({"n_in": 0}, "n_in must be"),
        ({"head": "mlp"}, "head must be one of"),
        ({"weights": "w.safetensors"}, "pretrained=False"),
    ],
)
def test_argument_errors(arguments: dict, message: str) -> None:
    options = {"n_out": 2, "pretrained": False} | arguments
    with pytest.raises(ValueError, match=message):
        create_model("test_resnet", **options)


def test_grayscale_input() -> None:
    model = create_model("test_resnet", 2, pretrained=False, n_in=1).eval()
    first_conv = next(m for m in model.body.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1 and model.config()["n_in"] == 1
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    tv = create_model(resnet18, 2, pretrained=False, n_in=1).eval()
    assert tv.body.conv1.weight.shape[1] == 1
    assert tv(torch.randn(1, 1, 64, 64)).shape == (1, 2)


def test_custom_constructor_needs_weights_or_pretrained_false() -> None:
    def small_net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    with pytest.raises(FileNotFoundError, match="pretrained=False"):
        create_model(small_net, 2)
    model = create_model(small_net, 3, pretrained=False, n_groups=2)
    assert model.arch == "custom:small_net"
    assert_contract(model, 2)


def test_module_without_pooling_is_rejected() -> None:
    with pytest.raises(ValueError, match="no global pooling layer"):
        create_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 2)
