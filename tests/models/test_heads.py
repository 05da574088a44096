"""Heads: fastai's layer recipe and initialisation, the linear head, custom modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unfreeze.models import AdaptiveConcatPool2d, build_head, fastai_head, linear_head


def test_concat_pool_is_max_then_average() -> None:
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    out = AdaptiveConcatPool2d()(x).flatten()
    assert out.tolist() == [3.0, 7.0, 1.5, 5.5]


def test_fastai_head_layers_match_fastai() -> None:
    head = fastai_head(64, 7, ps=0.5)
    kinds = [type(m) for m in head]
    assert kinds == [
        AdaptiveConcatPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear,
        nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear,
    ]  # fmt: skip
    assert head[2].num_features == 128 and head[6].num_features == 512
    assert (head[3].p, head[7].p) == (0.25, 0.5)
    assert (head[4].in_features, head[4].out_features, head[8].out_features) == (128, 512, 7)
    assert head[4].bias is None and head[8].bias is None
    for bn in (head[2], head[6]):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # Kaiming normal (fan_in, gain sqrt(2)): std close to sqrt(2 / 128).
    assert abs(head[4].weight.std().item() - (2 / 128) ** 0.5) < 0.01
    assert head.eval()(torch.randn(3, 64, 5, 5)).shape == (3, 7)


def test_fastai_head_hidden_widths_and_pooling_match_fastais_create_head() -> None:
    """fastai's create_head(64, 3, lin_ftrs=[32, 16], ps=0.4): a BatchNorm-Dropout-Linear block per width, ReLU
    between, ps/2 before every Linear but the last; concat_pool=False pools the average of nf features."""
    head = fastai_head(64, 3, ps=0.4, hidden=[32, 16])
    assert [type(m) for m in head] == [
        AdaptiveConcatPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d,
        nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear,
    ]  # fmt: skip
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.2, 0.2, 0.4]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [(128, 32), (32, 16),
                                                                                            (16, 3)]
    flat = fastai_head(64, 3, ps=0.25, hidden=[], concat_pool=False)
    assert [type(m) for m in flat] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert (flat[2].num_features, flat[3].p, flat[4].bias) == (64, 0.25, None)
    assert build_head("fastai", (1, 8, 2, 2), 3, hidden=[64], concat_pool=False)[1] == {
        "kind": "fastai", "ps": 0.5, "hidden": [64], "concat_pool": False}
    with pytest.raises(ValueError, match="shape the 'fastai' head"):
        build_head("linear", (1, 8, 2, 2), 3, hidden=[64])


def test_heads_without_pooling_take_pooled_features() -> None:
    assert fastai_head(32, 4, pool=False)[0].num_features == 32
    assert fastai_head(32, 4, pool=False).eval()(torch.randn(2, 32)).shape == (2, 4)
    assert linear_head(32, 4, pool=False)(torch.randn(2, 32)).shape == (2, 4)


def test_linear_head() -> None:
    head = linear_head(16, 3)
    assert [type(m) for m in head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    assert head(torch.randn(2, 16, 4, 4)).shape == (2, 3)


def test_build_head_configs_and_custom_checks() -> None:
    assert build_head("fastai", (1, 8, 2, 2), 3, ps=0.2)[1] == {"kind": "fastai", "ps": 0.2}
    custom = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 3))
    module, config = build_head(custom, (1, 8, 2, 2), 3)
    assert module is custom and config == {"kind": "custom", "class": "Sequential"}
    with pytest.raises(ValueError, match=r"expected \[5\]"):
        build_head(custom, (1, 8, 2, 2), 5)
    with pytest.raises(ValueError, match="fails on body features"):
        build_head(nn.Linear(3, 3), (1, 8, 2, 2), 3)
    with pytest.raises(TypeError, match="'fastai', 'linear'"):
        build_head("mlp", (1, 8, 2, 2), 3)


@pytest.mark.parametrize("bad", [{"n_out": 0}, {"ps": 1.0}, {"num_features": 0}])
def test_head_arguments_are_checked(bad: dict) -> None:
    arguments = {"num_features": 8, "n_out": 2, "ps": 0.5} | bad
    with pytest.raises(ValueError):
        fastai_head(arguments["num_features"], arguments["n_out"], ps=arguments["ps"])
