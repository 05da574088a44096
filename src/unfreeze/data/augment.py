"""Named augmentation presets (none, light, default, strong) for the batch augmentation on the device.

Every preset is a `BatchAugment`, so loaders, exports and `show_batch` treat it like the default one.
`strong` adds, per image and after the geometric/lighting pass, a torchvision v2 policy
(TrivialAugmentWide or RandAugment) and random erasing. Their random draws come from one seed per
image drawn from the loader's (seed, epoch) generator, so a resumed run replays them exactly and the
global RNG is left as it was.

| preset | flip | rotate | zoom | lighting | policy | erasing |
|---|---|---|---|---|---|---|
| none | - | - | - | - | - | - |
| light | 0.5 | - | 1-1.1 | 0.1 | - | - |
| default | 0.5 | ±10° | 1-1.1 | 0.2 | - | - |  (fastai's aug_transforms)
| strong | 0.5 | ±10° | 1-1.1 | 0.2 | TrivialAugmentWide | p 0.25 |

`flip=False` turns horizontal flips off in every preset: flips are wrong for digits, text or any
class whose mirror image is another class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unfreeze.data.transforms import AugmentParams, BatchAugment

__all__ = ["AUGMENT_PRESETS", "POLICIES", "PolicyAugment", "PolicyParams", "augment_preset"]

AUGMENT_PRESETS = ("none", "light", "default", "strong")
POLICIES = ("trivial", "randaugment", "none")


@dataclass
class PolicyParams(AugmentParams):
    """`AugmentParams` plus one seed per image for the policy and erasing draws (kept on the CPU)."""

    seed: torch.Tensor  # int64 [B]

    def to(self, device: torch.device) -> PolicyParams:
        """The geometric draws on `device`; the seeds stay on the CPU, where they seed the draws."""
        base = AugmentParams(*(getattr(self, name) for name in AugmentParams.__dataclass_fields__)).to(device)
        return PolicyParams(*(getattr(base, name) for name in AugmentParams.__dataclass_fields__), seed=self.seed)


@dataclass
class PolicyAugment(BatchAugment):
    """`BatchAugment` followed, per image, by an automatic augmentation policy and random erasing.

    Args:
        policy: "trivial" (TrivialAugmentWide), "randaugment" (RandAugment, 2 ops, magnitude 9) or "none".
        erase_p: Probability of erasing one random rectangle (torchvision's RandomErasing, value 0).

    Example:
        >>> augment = PolicyAugment(policy="trivial", erase_p=0.25)
        >>> params = augment.draw(np.random.default_rng(0), 4)
        >>> augment(torch.rand(4, 3, 72, 72), params, size=64).shape
        torch.Size([4, 3, 64, 64])
    """

    policy: str = "trivial"
    erase_p: float = 0.25

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}.")
        if not 0.0 <= self.erase_p <= 1.0:
            raise ValueError(f"erase_p must be a probability in [0, 1], got {self.erase_p!r}.")

    def _policy_transform(self) -> Any:
        from torchvision.transforms import v2  # imported when a policy first runs: `import unfreeze` stays fast

        steps: list[Any] = []
        if self.policy == "trivial":
            steps.append(v2.TrivialAugmentWide())
        elif self.policy == "randaugment":
            steps.append(v2.RandAugment())
        if self.erase_p > 0:
            steps.append(v2.RandomErasing(p=self.erase_p))
        return v2.Compose(steps)

    def draw(self, rng: np.random.Generator, n: int) -> PolicyParams:
        """Draw the geometric parameters, then one seed per image for the policy (always the same order)."""
        base = super().draw(rng, n)
        seeds = torch.as_tensor(rng.integers(0, 2**62, n), dtype=torch.int64)
        return PolicyParams(*(getattr(base, name) for name in AugmentParams.__dataclass_fields__), seed=seeds)

    def __call__(self, images: torch.Tensor, params: AugmentParams, size: int) -> torch.Tensor:
        """Augment float [B,3,H,W] images in [0, 1]; returns [B,3,size,size] on the same device."""
        images = super().__call__(images, params, size)
        if not isinstance(params, PolicyParams):
            raise TypeError(f"PolicyAugment needs the PolicyParams its draw() returns, got {type(params).__name__}.")
        transform = self._policy_transform()
        devices = [images.device.index or 0] if images.device.type == "cuda" else []
        out = torch.empty_like(images)
        # torchvision draws from the global torch RNG: fork it, so the caller's stream is untouched,
        # and seed each image from the loader's generator, so the draws repeat on resume.
        with torch.random.fork_rng(devices=devices):
            for index, seed in enumerate(params.seed.tolist()):
                torch.manual_seed(seed)
                out[index] = transform(images[index])
        return out


def augment_preset(name: str, flip: bool = True) -> BatchAugment | None:
    """The batch augmentation of a named preset (see the module table); None for "none".

    Args:
        name: One of "none", "light", "default", "strong".
        flip: False turns horizontal flips off (digits, text, anything whose mirror is another class).

    Example:
        >>> augment_preset("light", flip=False).flip_p
        0.0
        >>> dls = ImageDataLoaders.from_folder("data", size=64, augment=augment_preset("strong"))  # doctest: +SKIP
    """
    if name not in AUGMENT_PRESETS:
        raise ValueError(f"augment preset must be one of {AUGMENT_PRESETS}, got {name!r}.")
    flip_p = 0.5 if flip else 0.0
    if name == "none":
        return None
    if name == "light":
        return BatchAugment(flip_p=flip_p, max_rotate=0.0, max_lighting=0.1)
    if name == "default":
        return BatchAugment(flip_p=flip_p)
    return PolicyAugment(flip_p=flip_p, policy="trivial", erase_p=0.25)
