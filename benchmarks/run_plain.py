"""The plain PyTorch runner: fastai's recipe written out by hand, the overhead floor.

    .venv/bin/python benchmarks/run_plain.py --scenario fine_tune --seed 0

Same model as fastai builds (timm efficientnet_lite0 body cut at the pooling layer, fastai's head,
2 parameter groups), same optimizer (AdamW, betas (0.9, 0.99), eps 1e-5, decoupled weight decay 0.01,
none on biases and norm weights), same fine_tune phases on torch's OneCycleLR. The images are decoded
once into a uint8 tensor in memory; there is no augmentation (fastai's Resize of a square image is a
plain resize). This is the least any library can spend on the same work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import common
import torch
from torch import nn


class ConcatPool(nn.Module):
    """Max and average pooling concatenated (fastai's AdaptiveConcatPool2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


def fastai_head(n_features: int, n_out: int) -> nn.Sequential:
    """fastai's create_head with its defaults: concat pool, BN, dropout 0.25, 512 units, BN, dropout 0.5."""
    head = nn.Sequential(
        ConcatPool(),
        nn.BatchNorm1d(2 * n_features), nn.Dropout(0.25), nn.Linear(2 * n_features, 512, bias=False), nn.ReLU(),
        nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, n_out, bias=False),
    )
    for module in head:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight)
    return head


class TransferModel(nn.Module):
    """Body and head; `groups` are fastai's two parameter groups for a timm model."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        timm_model = common.timm_efficientnet_lite0(pretrained=True)
        self.body = nn.Sequential(
            timm_model.conv_stem, timm_model.bn1, timm_model.blocks, timm_model.conv_head, timm_model.bn2
        )
        self.head = fastai_head(timm_model.num_features, n_out)
        self.groups = [self.body, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Data:
    """Both splits as uint8 tensors in memory; batches are normalized floats."""

    def __init__(self, setup: common.Setup, seed: int) -> None:
        root = common.build_dataset(setup)
        train_images, train_labels = common.load_folder_uint8(root / "train", setup.size)
        valid_images, valid_labels = common.load_folder_uint8(root / "valid", setup.size)
        self.train = torch.from_numpy(train_images), torch.from_numpy(train_labels)
        self.valid = torch.from_numpy(valid_images), torch.from_numpy(valid_labels)
        self.batch_size = setup.batch_size
        self.mean = torch.tensor(setup.mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(setup.std).view(1, 3, 1, 1) * 255
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train[1]) // self.batch_size  # drop_last, as fastai's training loader

    def batches(self, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.train if train else self.valid
        if train:
            order = torch.randperm(len(labels), generator=self.generator)[: self.steps_per_epoch * self.batch_size]
        else:
            order = torch.arange(len(labels))
        for batch in order.split(self.batch_size):
            yield (images[batch].float() - self.mean) / self.std, labels[batch]


def freeze(model: TransferModel, frozen: bool) -> None:
    """fastai's freeze (train_bn=True: norm layers of the body keep training) or unfreeze."""
    for module in model.body.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param in module.parameters(recurse=False):
            param.requires_grad_(not frozen or is_norm)


def make_optimizer(model: TransferModel, lrs: list[float]) -> torch.optim.AdamW:
    """fastai's Adam: one LR per group, no weight decay on biases and norm weights."""
    groups = []
    for group, lr in zip(model.groups, lrs, strict=True):
        params = list(group.parameters())
        groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": 0.01})
        groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-5)


def per_optimizer_group(lrs: list[float]) -> list[float]:
    return [lr for lr in lrs for _ in range(2)]


@torch.no_grad()
def predict(model: nn.Module, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over the validation set."""
    model.eval()
    outputs, targets = [], []
    for images, labels in data.batches(train=False):
        outputs.append(model(images))
        targets.append(labels)
    return torch.cat(outputs), torch.cat(targets)


def fit_one_cycle(
    model: TransferModel, data: Data, n_epoch: int, lrs: list[float], pct_start: float, div: float
) -> float:
    """fastai's fit_one_cycle on torch's OneCycleLR; returns the validation error after the last epoch."""
    optimizer = make_optimizer(model, lrs)  # a fresh optimizer per phase: fastai clears Adam's state
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=per_optimizer_group(lrs), total_steps=n_epoch * data.steps_per_epoch,
        pct_start=pct_start, div_factor=div, final_div_factor=1e5 / div,  # torch: relative to the start LR
        base_momentum=0.85, max_momentum=0.95,
    )
    loss_func = nn.CrossEntropyLoss()
    error = math.nan
    for _ in range(n_epoch):
        model.train()
        for images, labels in data.batches(train=True):
            loss = loss_func(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        logits, targets = predict(model, data)
        error = (logits.argmax(1) != targets).float().mean().item()
    return error


def fine_tune(model: TransferModel, data: Data, epochs: int, base_lr: float = 2e-3, lr_mult: float = 100) -> float:
    """fastai's fine_tune phases; returns the final validation error."""
    freeze(model, True)
    fit_one_cycle(model, data, 1, [base_lr / 10, base_lr], pct_start=0.99, div=25.0)  # slice(base_lr)
    base_lr /= 2
    freeze(model, False)
    return fit_one_cycle(model, data, epochs, [base_lr / lr_mult, base_lr], pct_start=0.3, div=5.0)


def lr_find(
    model: TransferModel, data: Data, num_it: int, start_lr: float = 1e-7, end_lr: float = 10.0
) -> dict[str, Any]:
    """fastai's range test: exponential LR, EMA-smoothed loss, stop at 4x the best; state restored."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, [start_lr, start_lr])
    loss_func = nn.CrossEntropyLoss()
    smooth, best, iteration = 0.0, math.inf, 0
    model.train()
    while iteration < num_it:
        for images, labels in data.batches(train=True):
            lr = start_lr * (end_lr / start_lr) ** (iteration / num_it)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_func(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            smooth = 0.98 * smooth + 0.02 * loss.item()
            debiased = smooth / (1 - 0.98**iteration)
            best = min(best, debiased)
            if iteration >= num_it or debiased > 4 * best or not math.isfinite(debiased):
                model.load_state_dict(saved)
                return {"iterations": iteration}
    model.load_state_dict(saved)
    return {"iterations": iteration}


def main() -> None:
    args = common.runner_arguments(__doc__.splitlines()[0])
    setup = common.setup_for(args.quick)
    common.prepare_process(setup)
    torch.manual_seed(args.seed)
    times: dict[str, float] = {}
    result: dict[str, Any] = {"runner": "plain", "config": args.config, "scenario": args.scenario, "seed": args.seed}
    with common.timed(times, "setup_s"):
        data = Data(setup, args.seed)
        model = TransferModel(n_out=len(common.FASHION_MNIST_CLASSES))
        freeze(model, True)  # the state vision_learner returns
    if args.scenario == "fine_tune":
        with common.timed(times, "wall_s"):
            result["error"] = fine_tune(model, data, setup.epochs)
    elif args.scenario == "lr_find":
        with common.timed(times, "wall_s"):
            result.update(lr_find(model, data, setup.lr_find_iterations))
    else:
        predict(model, data)  # untimed warm-up pass, as in the other runners
        with common.timed(times, "wall_s"):
            logits, _ = predict(model, data)
            logits.softmax(1)
        result["images_per_s"] = len(logits) / times["wall_s"]
    result.update(times)
    result["total_s"] = times["setup_s"] + times["wall_s"]
    result["num_workers"] = 0
    result["threads"] = torch.get_num_threads()
    result["versions"] = common.library_versions(["torch", "timm"])
    common.emit(result)


if __name__ == "__main__":
    main()
