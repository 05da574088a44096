"""CUDA-only checks of the GPU path (skipped without a GPU; run on one with `pytest -m gpu`).

They check what the CPU suite cannot: pinned asynchronous copies, the store on CUDA memory, bf16
autocast, the fused optimizer and the overlapped loss read-back, against the CPU path's results.
"""

from __future__ import annotations

import math

import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.train.builders import vision_learner
from unfreeze.train.learner import NonFiniteLossError

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _dls(root, device: str) -> ImageDataLoaders:
    return ImageDataLoaders.from_folder(root, size=16, item_size=20, bs=4, seed=0, num_workers=0, device=device)


def test_gpu_batches_equal_cpu_batches(make_image_folder):
    root = make_image_folder(classes=("ant", "bee"), n_train=10, n_valid=5, size=(20, 20))
    cpu, gpu = _dls(root, "cpu"), _dls(root, "cuda")
    for epoch in range(3):  # epoch 0 decodes (host path); from epoch 1 the store serves the GPU
        cpu.train.set_epoch(epoch)
        gpu.train.set_epoch(epoch)
        for (cpu_images, cpu_labels), (images, labels) in zip(cpu.train, gpu.train, strict=True):
            assert images.device.type == "cuda" and labels.device.type == "cuda"
            assert torch.equal(labels.cpu(), cpu_labels)
            torch.testing.assert_close(images.cpu(), cpu_images, rtol=0, atol=1e-4)
    assert gpu.train._store is not None and gpu.train._store.images.device.type == "cuda"
    assert cpu.train._store is None


def test_fine_tune_on_the_gpu_learns_and_overlaps_steps(make_image_folder):
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=12, n_valid=6, size=(20, 20))
    dls = _dls(root, "cuda")
    learn = vision_learner(dls, "test_resnet", metrics=["accuracy"], pretrained=False, seed=0, quiet=True)
    assert learn.stepper.overlap_steps and learn.amp_dtype in (torch.bfloat16, torch.float16)
    learn.fine_tune(3, base_lr=1e-2)
    losses = learn.recorder.losses
    assert len(losses) == 4 * len(dls.train) and all(math.isfinite(loss) for loss in losses)
    assert learn.recorder.history[-1]["accuracy"] > 0.5
    assert learn.optimizer.defaults.get("fused")


class NaNFrom(torch.nn.Module):
    """Cross-entropy that turns NaN from the n-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, targets)
        return loss * math.nan if self.calls >= self.n else loss


def test_nan_on_the_gpu_restores_the_epoch_start(make_image_folder):
    root = make_image_folder(classes=("ant", "bee"), n_train=8, n_valid=4, size=(20, 20))
    dls = _dls(root, "cuda")
    loss_func = NaNFrom(10**9)
    learn = vision_learner(dls, "test_resnet", pretrained=False, seed=0, quiet=True, loss_func=loss_func)
    learn.unfreeze()
    learn.fit(1, 1e-3)
    good = {k: v.clone() for k, v in learn.model.state_dict().items()}
    loss_func.n = loss_func.calls + 2  # the second step of the next fit
    with pytest.raises(NonFiniteLossError, match="step"):
        learn.fit(1, 1e-3)
    assert all(torch.equal(good[k], v) for k, v in learn.model.state_dict().items())
    assert torch.isfinite(learn.collect_logits(dls.valid)[0]).all()


def test_a_late_loss_read_waits_for_its_own_step_only():
    from unfreeze.train.loop import _PendingLoss

    loss = torch.tensor(1.5, device="cuda")
    pending = _PendingLoss.queue(loss, [1e-3], 0.9, 1, overlap=True)
    assert pending.value.device.type == "cpu" and pending.value.is_pinned() and pending.ready is not None
    assert pending.read() == 1.5
    assert _PendingLoss.queue(loss, [1e-3], 0.9, 1, overlap=False).ready is None
