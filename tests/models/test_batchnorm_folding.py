"""folded_batchnorm: frozen (convolution, norm) pairs run folded, with the same outputs and gradients."""

from __future__ import annotations

import contextlib

import timm
import torch
from torch import nn

from unfreeze.models.batchnorm_folding import folded_batchnorm


def _randomise_norms(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def _patched_modules(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if "forward" in vars(module)]


def test_a_timm_efficientnet_gives_the_same_outputs_folded_and_is_put_back():
    model = _randomise_norms(timm.create_model("efficientnet_lite0", num_classes=5)).eval()
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        plain = model(images)
        with folded_batchnorm(model, images) as n_folded:
            assert len(_patched_modules(model)) == 2 * n_folded
            folded = model(images)
    # every convolution of efficientnet_lite0 is followed by a norm layer (timm's BatchNormAct2d)
    assert n_folded == sum(isinstance(module, nn.Conv2d) for module in model.modules())
    assert torch.allclose(folded, plain, atol=1e-4 * float(plain.abs().max()))
    assert _patched_modules(model) == []  # the class's forward again


def test_hooks_see_only_the_callers_passes():
    model = _randomise_norms(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
                                           nn.BatchNorm2d(4))).eval()
    calls = []
    model[0].register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    with torch.no_grad(), folded_batchnorm(model, torch.rand(3, 3, 16, 16)) as n_folded:
        model(torch.rand(3, 3, 16, 16))
    assert n_folded == 2 and calls == [3]  # finding and checking the pairs ran on a copy


def test_a_frozen_body_trains_its_head_with_the_same_loss_and_gradients_folded():
    body = _randomise_norms(nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    model = nn.Sequential(body, nn.Linear(8, 3))
    body.requires_grad_(False)
    body.eval()  # norm layers in inference mode, as train_bn=False keeps a frozen body's
    images, labels = torch.rand(5, 3, 12, 12), torch.tensor([0, 1, 2, 0, 1])
    losses, grads = [], []
    for fold in (False, True):
        model[1].weight.grad = None
        with folded_batchnorm(model, images) if fold else contextlib.nullcontext(0) as n_folded:
            loss = nn.functional.cross_entropy(model(images), labels)
        assert n_folded == (1 if fold else 0)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(model[1].weight.grad.clone())
    assert abs(losses[0] - losses[1]) < 1e-5 and torch.allclose(grads[0], grads[1], atol=1e-5)


def test_pairs_that_train_or_norms_in_training_mode_stay_as_they_are():
    model = _randomise_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    images = torch.rand(2, 3, 8, 8)
    model.eval()
    with folded_batchnorm(model, images) as n_folded:  # gradients on, and the pair's parameters train
        assert n_folded == 0
    model.train()
    with torch.no_grad(), folded_batchnorm(model, images) as n_folded:  # batch statistics: nothing to fold
        assert n_folded == 0
    double = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).double().eval()
    with torch.no_grad(), folded_batchnorm(double, images.double()) as n_folded:  # float32 only
        assert n_folded == 0


class _Reused(nn.Module):
    """A convolution whose output feeds a norm layer and, unnormalised, the output too: not foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.norm(y) + y


def test_a_convolution_output_used_elsewhere_is_not_folded():
    model = _randomise_norms(_Reused()).eval()
    images = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        plain = model(images)
        with folded_batchnorm(model, images) as n_folded:
            assert n_folded == 0
            assert torch.equal(model(images), plain)


def test_the_folded_weights_follow_changes_to_the_model():
    model = _randomise_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    images = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        with folded_batchnorm(model, images):
            model(images)  # folds and caches
        model[0].weight.mul_(2.0)  # an optimizer step, in place
        model[1].running_mean.add_(0.3)
        plain = model(images)
        with folded_batchnorm(model, images) as n_folded:
            folded = model(images)
    assert n_folded == 1 and torch.allclose(folded, plain, atol=1e-5)


def test_threads_predicting_with_one_model_share_its_folding():
    import threading

    model = _randomise_norms(timm.create_model("efficientnet_lite0", num_classes=5)).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
    errors: list[float] = []

    def predict() -> None:
        for _ in range(5):
            with torch.no_grad(), folded_batchnorm(model, images):
                errors.append(float((model(images) - expected).abs().max()))

    threads = [threading.Thread(target=predict) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 15 and max(errors) < 1e-3 and _patched_modules(model) == []


def test_a_body_folded_inside_its_folded_model_leaves_the_model_as_it_was():
    model = _randomise_norms(nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.Flatten())).eval()
    images = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        plain = model(images)
        with folded_batchnorm(model, images):
            with folded_batchnorm(model[0], images) as inner:
                assert inner == 0  # its pair is folded already
            assert torch.allclose(model(images), plain, atol=1e-5) and len(_patched_modules(model)) == 2
    assert _patched_modules(model) == []


def test_collect_logits_folds_and_restores_the_mode_even_when_the_first_batch_fails():
    import pytest

    from unfreeze.inference import collect_logits

    model = _randomise_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())).train()
    images = torch.rand(2, 3, 8, 8)
    logits, _ = collect_logits(model, [(images, torch.tensor([0, 1]))])
    assert model.training and _patched_modules(model) == []
    with torch.no_grad():
        assert torch.allclose(logits, model.eval()(images), atol=1e-5)

    class Broken:
        def __iter__(self):
            raise OSError("the disk went away")

    model.train()
    with pytest.raises(OSError, match="disk"):
        collect_logits(model, Broken())
    assert model.training
