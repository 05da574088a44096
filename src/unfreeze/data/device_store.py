"""DeviceStore: every decoded image of a dataset, as uint8, resident on the accelerator.

Once the first pass has decoded a whole dataset into the host cache, and the images fit in the GPU's
free memory, a loader copies them to the GPU once. From then on a batch is an index lookup on the
GPU: no per-batch stacking on the host and no host-to-device copy of pixels, only of the indices and
the augmentation draws (a few hundred bytes, sent without waiting).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unfreeze.data.transforms import crop_item, to_device_async

__all__ = ["DeviceStore", "device_budget"]

# Share of the device's free memory the store may take: the rest is for the model's activations.
_FREE_MEMORY_SHARE = 0.25
# Bytes stacked on the host per host→device copy while building: bounds the staging buffer.
_UPLOAD_BYTES = 2**28


def device_budget(device: torch.device) -> int:
    """Bytes a store may take on `device` when left to decide: a quarter of the free CUDA memory.

    Other devices get 0: on the CPU the host cache already is the store, and MPS reports no free
    memory to size against.
    """
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * _FREE_MEMORY_SHARE)


class DeviceStore:
    """The uint8 CHW images and labels of a dataset's decodable items, on one device.

    `items` are the dataset indices the images belong to; `rows(indices)` maps dataset indices back
    to store rows (-1 for items that are not in the store, such as undecodable files).

    Images of one square shape are kept as a single [N,3,S,S] tensor and gathered with one
    `index_select`; images of mixed shapes (crop resizing of photos of different aspect ratios) are
    kept one tensor each and cropped as views before one `torch.stack`.

    Example:
        >>> store = DeviceStore(items, images, labels, 100, 112, torch.device("cuda"))  # doctest: +SKIP
        >>> batch, batch_labels = store.gather(store.rows(np.array([0, 5, 7])), None)  # doctest: +SKIP
    """

    def __init__(self, items: Sequence[int], images: Sequence[torch.Tensor], labels: torch.Tensor | Sequence[int],
                 n_items: int,
                 item_size: int, device: torch.device) -> None:
        if not len(items) == len(images) == len(labels):
            raise ValueError(f"Expected one image and one label per item, got {len(items)} items, {len(images)} "
                             f"images and {len(labels)} labels.")
        self.device, self.item_size = device, item_size
        self._row_of = np.full(n_items, -1, dtype=np.int64)
        self._row_of[list(items)] = np.arange(len(items))
        self.n_bytes = sum(image.numel() for image in images)
        labels = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(list(labels), dtype=torch.long)
        self.labels = labels.to(device)  # long [N] class indices, or float [N, C] multi-hot rows
        square = (3, item_size, item_size)
        self.uniform = all(tuple(image.shape) == square for image in images)
        if self.uniform:
            self.images: torch.Tensor | list[torch.Tensor] = torch.empty((len(images), *square), dtype=torch.uint8,
                                                                         device=device)
            per_chunk = max(1, _UPLOAD_BYTES // (3 * item_size * item_size))
            for start in range(0, len(images), per_chunk):
                chunk = torch.stack(list(images[start : start + per_chunk]))
                self.images[start : start + len(chunk)].copy_(chunk)
        else:
            self.images = [image.to(device) for image in images]

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Store rows of dataset `indices`; -1 where an item is not in the store."""
        return self._row_of[indices]

    def gather(self, rows: np.ndarray, positions: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B,3,S,S] crops and the targets of store rows `rows`, on the device.

        `positions` ([B,2] fractions in [0, 1)) place random crops; None takes centre crops. Square
        images need no crop, so they ignore it.
        """
        index = to_device_async(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)), self.device)
        labels = self.labels.index_select(0, index)
        if isinstance(self.images, torch.Tensor):
            return self.images.index_select(0, index), labels
        crops = [crop_item(self.images[row], self.item_size, None if positions is None else tuple(positions[slot]))
                 for slot, row in enumerate(rows.tolist())]
        return torch.stack(crops), labels
