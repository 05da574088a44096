"""The learner's data: loaders moved to its device, sharded under torchrun, normalised for its model.

The constructor and `learn.dls = new_dls` (fastai's progressive resizing) both go through
`bind_data`, so swapped loaders get exactly what the first ones got.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unfreeze import distributed

__all__ = ["bind_data"]


def bind_data(dls: Any, device: torch.device, model: nn.Module, current: Any = None) -> Any:
    """`dls` ready for a learner: on `device`, this rank's shard, the model's input statistics applied.

    A model without statistics of its own (a plain nn.Module) leaves the data's normalisation as its
    `batch_tfms` set it, as fastai's plain Learner does.

    Args:
        dls: The new loaders (`ImageDataLoaders`).
        device: The learner's device.
        model: The learner's model; its `mean`/`std`, when it has them, normalise the batches.
        current: The loaders being replaced, if any: the new ones must have the same classes.

    Returns:
        The loaders on `device` (`dls.to(device)`).

    Raises:
        ValueError: The new loaders' classes differ from the current ones (the model's head).

    Example:
        >>> learn.dls = bind_data(new_dls, learn.device, learn.model, learn.dls)  # doctest: +SKIP
    """
    if current is not None and list(getattr(dls, "vocab", [])) != list(getattr(current, "vocab", [])):
        raise ValueError(f"The new data's classes {list(getattr(dls, 'vocab', []))} differ from the model's "
                         f"{list(current.vocab)}. Build the new loaders from the same labels, or a new learner.")
    dls = dls.to(device)
    if distributed.is_distributed():
        # Training shards like DistributedSampler; validation shards cover each item exactly once.
        for loader in (dls.train, dls.valid):
            loader.shard(distributed.rank(), distributed.world_size())
    if hasattr(dls, "set_normalization") and hasattr(model, "mean"):
        dls.set_normalization(model.mean, model.std)
    return dls
