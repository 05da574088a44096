"""Each item's loss under any loss function: what `get_preds(with_loss=True)`, top losses and the
interpretation read (fastai's `with_loss`), for every task.

A loss function is called unreduced: a copy with `reduction="none"` when it has that attribute (torch's and
unfreeze's losses), else with `reduction="none"` as a keyword (fastai's convention for functions), else
item by item. An item's several values (per class, per output, or flattened to N x K as fastai's
`MSELossFlat` returns them) are averaged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

__all__ = ["labelled_item_losses", "unreduced_loss"]


def unreduced_loss(loss_func: Callable[..., torch.Tensor], logits: torch.Tensor,
                   targets: torch.Tensor) -> torch.Tensor:
    """float [N]: `loss_func` per item rather than reduced over the batch.

    Example:
        >>> unreduced_loss(torch.nn.CrossEntropyLoss(), torch.zeros(2, 3), torch.tensor([0, 1])).shape
        torch.Size([2])
    """
    n_items = len(logits)
    with torch.no_grad():
        if isinstance(getattr(loss_func, "reduction", None), str):
            per_item = copy.copy(loss_func)  # the caller's own keeps its reduction
            per_item.reduction = "none"
            values = per_item(logits, targets)
        else:
            try:
                values = loss_func(logits, targets, reduction="none")
            except TypeError:  # no reduction keyword
                values = None
        values = None if values is None else torch.as_tensor(values)
        if values is None or values.numel() == 0 or values.numel() % n_items:
            # Reduced anyway (a forward that ignores `reduction`, a wrapper holding the real loss): one call an item.
            values = torch.stack([torch.as_tensor(loss_func(logits[i:i + 1], targets[i:i + 1])).float().mean()
                                  for i in range(n_items)])
    return values.float().reshape(n_items, -1).mean(dim=1)


def labelled_item_losses(loss_func: Callable[..., torch.Tensor], logits: torch.Tensor, targets: torch.Tensor,
                         labelled: torch.Tensor) -> torch.Tensor:
    """float [N]: `unreduced_loss` of the `labelled` items, NaN for the others.

    Example:
        >>> labelled_item_losses(torch.nn.CrossEntropyLoss(), torch.zeros(2, 3), torch.tensor([0, -1]),
        ...                      torch.tensor([True, False])).isnan().tolist()
        [False, True]
    """
    losses = torch.full((len(targets),), math.nan, device=logits.device)
    if labelled.any():
        losses[labelled] = unreduced_loss(loss_func, logits[labelled], targets[labelled]).to(losses.device)
    return losses
