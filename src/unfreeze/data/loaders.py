"""ImageDataset and ImageDataLoader: items → decoded-once uint8 cache → batches on the device.

The first pass decodes and resizes every image once, in worker processes, and the main process keeps
the uint8 results in memory up to a byte budget. Later epochs only crop, stack, move and augment.
On a GPU, a fully decoded dataset that fits moves to the GPU once (`DeviceStore`), and later epochs
gather their batches there.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from unfreeze.data.cache import DecodedCache, default_cache_bytes
from unfreeze.data.decode import BadFileReport, DecodeJob, ImageSource, as_list, chw, decode_item, default_workers
from unfreeze.data.device_store import DeviceStore, device_budget
from unfreeze.data.sources import DataError
from unfreeze.data.transforms import BatchAugment, crop_item, move_points, resize_batch, to_device_async
from unfreeze.tasks import Label, Regression, SingleLabel, Task

__all__ = ["BatchTransform", "ImageDataLoader", "ImageDataset"]

# (images, targets) → (images, targets), applied to every finished training batch (e.g. mixup/cutmix).
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@contextmanager
def _one_cpu_thread(active: bool) -> Iterator[None]:
    # Batch-sized elementwise ops on the CPU run several times faster on one thread than on a pool
    # that competes with the model and the decoding workers (benchmarks/results/data.md). The
    # caller's thread count is restored before each batch is handed over.
    previous = torch.get_num_threads()
    if active and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the main process handles it and shuts the workers down,
    # so a worker printing its own KeyboardInterrupt traceback would only bury the one-line message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_batch_size(batch_size: object) -> int:
    # bool is an int subclass, and 2.5 would fail much later inside numpy's slicing.
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"the batch size must be a whole number >= 1, got {batch_size!r}. Pass e.g. bs=64")
    return batch_size


def _shown_label(name: Any) -> str:
    """A class name as it is, a regression value with 3 significant digits."""
    return f"{name:.3g}" if isinstance(name, float) else str(name)


class ImageDataset:
    """(path, label) items with a vocab, and the cache of their decoded, item-resized images.

    A label is a class name, or for a `MultiLabel` task a tuple of class names; the task turns the
    labels into the target tensor (`targets`) that batches carry.

    Example:
        >>> dataset = ImageDataset([(Path("a.png"), "cat"), (Path("b.png"), "dog")], ["cat", "dog"])
        >>> dataset.labels()
        [0, 1]
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, Label]],
        vocab: Sequence[str],
        *,
        sources: Sequence[ImageSource] | None = None,
        item_size: int = 224,
        resize_method: str = "crop",
        cache_bytes: int | None = None,
        task: Task | None = None,
    ) -> None:
        self.items = [(Path(path), label) for path, label in items]
        self.vocab = list(vocab)
        self.sources = list(sources) if sources is not None else [path for path, _ in self.items]
        self.item_size, self.resize_method = item_size, resize_method
        self.cache = DecodedCache(default_cache_bytes() if cache_bytes is None else cache_bytes)
        self.dropped: dict[int, str] = {}  # index → why it could not be decoded
        # Every item was decoded once (`ImageDataLoader.preload`): `dropped` is complete, also when the cache is full.
        self.tried_all = False
        self.task: Task = task if task is not None else SingleLabel()
        # long [N] class indices (-1: unlabelled), or float [N, C] multi-hot rows for multi-label data.
        self.targets = self.task.encode([label for _, label in self.items], self.vocab)

    def __len__(self) -> int:
        return len(self.items)

    def decoded_targets(self) -> torch.Tensor:
        """`targets` without the items that failed to decode so far: the labels that can train.

        Example:
            >>> dataset.decoded_targets()  # doctest: +SKIP
            tensor([0, 1, 1])
        """
        return self.targets[[index for index in range(len(self)) if index not in self.dropped]]

    def labels(self) -> list[Any]:
        """Class index per item (-1 for unlabelled items); a multi-hot list per item for multi-label."""
        return self.targets.tolist()

    @property
    def from_files(self) -> bool:
        return all(isinstance(source, (str, Path)) for source in self.sources)

    def image(self, index: int) -> torch.Tensor:
        """The item-resized uint8 CHW image, from the cache or decoded now; DataError if undecodable."""
        if index in self.cache:
            return self.cache.images[index]
        array, error = decode_item(self.sources[index], self.item_size, self.resize_method)
        if array is None:
            raise DataError(f"{self.items[index][0]} could not be decoded ({error}). Expected an image file.")
        image = chw(array)
        self.cache.put(index, image)
        return image

    def set_item_size(self, item_size: int) -> None:
        """Resize the items to `item_size` from now on: the images decoded at the old size are dropped.

        Example:
            >>> dataset.set_item_size(64); dataset.item_size  # doctest: +SKIP
            64
        """
        if item_size != self.item_size:
            self.item_size, self.cache = item_size, DecodedCache(self.cache.max_bytes)
            self.tried_all = False

    def subset(self, indices: Sequence[int]) -> ImageDataset:
        """The items at `indices`, in that order, with the images this dataset decoded already (shared, not
        copied) and the ones it could not decode.

        Example:
            >>> dataset.subset([2, 0]).items == [dataset.items[2], dataset.items[0]]  # doctest: +SKIP
            True
        """
        indices = [int(index) for index in indices]
        part = ImageDataset([self.items[i] for i in indices], self.vocab, sources=[self.sources[i] for i in indices],
                            item_size=self.item_size, resize_method=self.resize_method,
                            cache_bytes=self.cache.max_bytes, task=self.task)
        part.tried_all = self.tried_all
        for new, old in enumerate(indices):
            if old in self.dropped:
                part.dropped[new] = self.dropped[old]
            elif old in self.cache:
                part.cache.put(new, self.cache.images[old])
        return part

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [3,S,S] centre crop, target), for inspection; training uses ImageDataLoader."""
        return crop_item(self.image(index), self.item_size, None).contiguous(), self.targets[index]


class ImageDataLoader:
    """Batches of (float [B,3,H,W] normalized, long [B]) on `device`, in an order set by (seed, epoch).

    Training loaders shuffle, random-crop and augment; others are deterministic.

    `device_cache` decides whether the decoded images move to the loader's device once the whole
    dataset is decoded: None (the default) does so on CUDA when they take at most a quarter of the
    free GPU memory; True always (any device); False never. Batches are identical either way.

    Example:
        >>> loader = ImageDataLoader(dataset, 64, training=True, augment=BatchAugment(), size=224)  # doctest: +SKIP
        >>> loader.set_epoch(3)  # doctest: +SKIP
        >>> images, labels = next(iter(loader))  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int = 64,
        *,
        training: bool = False,
        drop_last: bool = False,
        size: int | None = None,
        augment: BatchAugment | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        num_workers: int | None = None,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        device_cache: bool | None = None,
    ) -> None:
        self.dataset, self.batch_size = dataset, _check_batch_size(batch_size)
        self.training = self.shuffle = training
        self.drop_last = drop_last
        self.size = size or dataset.item_size
        self.augment = augment if training else None
        self.seed, self.epoch = seed, 0
        self.sample_weights: np.ndarray | None = None  # set_sample_weights: weighted draws instead of a shuffle
        # Passes over the items in one training epoch (a small set's epoch holds several: train.recipe.plan).
        self.passes = 1
        self.device = torch.device(device)
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.worker_start_method: str | None = None  # None: the platform default (fork on Linux)
        self.rank, self.world_size = 0, 1
        self._norm_cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None
        self.device_cache = device_cache
        self._store: DeviceStore | None = None
        self._store_refused: torch.device | None = None  # the device a store did not fit on
        self.batch_transforms: list[BatchTransform] = []
        self.set_normalization(mean, std)

    @property
    def bs(self) -> int:
        """fastai's name for `batch_size` (`dls.train.bs`, `dls.valid.bs`)."""
        return self.batch_size

    def add_batch_transform(self, transform: BatchTransform) -> None:
        """Apply `transform(images, targets)` to every batch this loader yields from now on, in order.

        Batch-level mixing (mixup, cutmix) changes images and targets together, so it cannot be part
        of the per-image augmentation; callbacks register it for a fit and remove it afterwards.

        Example:
            >>> loader.add_batch_transform(lambda images, targets: (images.flip(-1), targets))  # doctest: +SKIP
        """
        self.batch_transforms.append(transform)

    def remove_batch_transform(self, transform: BatchTransform) -> None:
        """Stop applying a transform `add_batch_transform` registered (a no-op if it is not there)."""
        # == rather than `is`: each `obj.method` access builds a new bound method, equal but not identical.
        self.batch_transforms = [known for known in self.batch_transforms if known != transform]

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Per-channel mean and std applied after augmentation (the backbone's input statistics)."""
        self.mean, self.std = tuple(float(value) for value in mean), tuple(float(value) for value in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std must be 3 values each, std > 0; got {mean} and {std}")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation draws the next iteration replays."""
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> None:
        """Make this loader yield only rank `rank`'s part of each epoch (DDP).

        Training: every rank draws the same permutation, padded to a multiple of world_size like
        torch's DistributedSampler, and takes every world_size-th index: equal lengths, disjoint.
        Otherwise: contiguous, disjoint, unpadded slices whose union is every item exactly once.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = rank, world_size

    def set_sample_weights(self, weights: Sequence[float] | torch.Tensor | None) -> None:
        """Draw each epoch's items with replacement in proportion to `weights` (one per item), e.g.
        against class imbalance; None goes back to a plain shuffle. Only a shuffling loader samples.

        Example:
            >>> dls.train.set_sample_weights(dls.task.item_weights(dls.train.dataset.targets))  # doctest: +SKIP
        """
        if weights is None:
            self.sample_weights = None
            return
        array = np.asarray(torch.as_tensor(weights, dtype=torch.float64).cpu(), dtype=np.float64)
        if array.shape != (len(self.dataset),) or not np.isfinite(array).all() or (array < 0).any() or array.sum() <= 0:
            raise ValueError(f"Expected one finite weight >= 0 per item ({len(self.dataset)}), not all 0; got an "
                             f"array of shape {array.shape}.")
        self.sample_weights = array / array.sum()

    def _order(self) -> np.ndarray:
        n_items = len(self.dataset)
        if self.shuffle and self.sample_weights is not None:
            # Weighted draws with replacement: an epoch has as many items as the dataset, rare classes repeat.
            order = np.random.default_rng([self.seed, self.epoch]).choice(n_items, n_items * self.passes,
                                                                          p=self.sample_weights)
        elif self.shuffle:
            # Pass 0 is the one-pass epoch's permutation; further passes draw their own.
            order = np.concatenate([np.random.default_rng([self.seed, self.epoch, *([extra] if extra else [])])
                                    .permutation(n_items) for extra in range(self.passes)])
        else:
            order = np.arange(n_items)
        if self.world_size == 1:
            return order
        if self.shuffle:
            drawn = len(order)
            total = -(-drawn // self.world_size) * self.world_size
            order = np.concatenate([order, order[: total - drawn]]) if total > drawn else order
            return order[self.rank :: self.world_size]
        return np.array_split(order, self.world_size)[self.rank]

    def _batches(self) -> list[np.ndarray]:
        order = self._order()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        return [order[start : start + self.batch_size] for start in range(0, stop, self.batch_size)]

    def __len__(self) -> int:
        n_items, world_size = len(self.dataset), self.world_size
        if self.shuffle:
            n_items = -(-(n_items * self.passes) // world_size)  # padded to equal lengths
        else:
            n_items = n_items // world_size + (self.rank < n_items % world_size)
        return n_items // self.batch_size if self.drop_last else -(-n_items // self.batch_size)

    def _decoded(self, missing: list[list[int]]) -> Iterator[list[tuple[int, np.ndarray | None, str]]]:
        n_missing = sum(len(wanted) for wanted in missing)
        dataset = self.dataset
        # Starting workers costs more than decoding a couple of batches in this process.
        if self.num_workers > 0 and n_missing > 2 * self.batch_size and dataset.from_files:
            job = DecodeJob([str(source) for source in dataset.sources], dataset.item_size, dataset.resize_method)
            yield from DataLoader(
                job, batch_sampler=missing, num_workers=self.num_workers, collate_fn=as_list,
                multiprocessing_context=self.worker_start_method, worker_init_fn=_ignore_sigint,
                generator=torch.Generator().manual_seed(0),  # else DataLoader draws from the global RNG
            )
            return
        for wanted in missing:
            yield [(index, *decode_item(dataset.sources[index], dataset.item_size, dataset.resize_method))
                   for index in wanted]

    def _uint8_batches(self, batches: list[np.ndarray]) -> Iterator[list[torch.Tensor | None]]:
        """Per batch, the item-resized CHW images (None for undecodable ones); fills the cache."""
        cache, dropped = self.dataset.cache, self.dataset.dropped
        missing = [[int(index) for index in batch if index not in cache and index not in dropped]
                   for batch in batches]
        fresh = self._decoded(missing) if any(missing) else None
        newly_bad = BadFileReport()
        try:
            for batch in batches:
                decoded = {index: (array, error) for index, array, error in next(fresh)} if fresh else {}
                images: list[torch.Tensor | None] = []
                for index in map(int, batch):
                    if index in decoded:
                        array, error = decoded[index]
                        if array is None:
                            if index not in dropped:
                                dropped[index] = error
                                newly_bad.add(self.dataset.items[index][0], error)
                            images.append(None)
                            continue
                        image = chw(array)
                        cache.put(index, image)
                        images.append(image)
                    else:
                        images.append(cache.images.get(index))
                yield images
        finally:
            newly_bad.warn("files that could not be decoded; they are left out of every later batch" + (
                "" if self.training else ", so get_preds over this loader returns no row for them (their positions "
                "in its items: dl.dataset.dropped)"))

    def _finish(self, images: list[torch.Tensor | None] | None, indices: np.ndarray, rng: np.random.Generator,
                normalize: bool = True,
                store: DeviceStore | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        # Draws cover every slot of the batch, dropped or not, so the random stream never shifts.
        slots = len(indices)
        positions = rng.random((slots, 2)) if self.training else None
        params = self.augment.draw(rng, slots) if self.augment is not None else None
        if store is not None:
            rows = store.rows(indices)
            keep = np.flatnonzero(rows >= 0).tolist()
            if not keep:
                return None
            crops, labels = store.gather(rows[keep], None if positions is None else positions[keep])
        else:
            keep = [slot for slot, image in enumerate(images or []) if image is not None]
            if not keep:
                return None
            item_size = self.dataset.item_size
            crops = torch.stack([
                crop_item(images[slot], item_size, None if positions is None else tuple(positions[slot]))
                for slot in keep
            ])
            labels = self.dataset.targets[torch.as_tensor(indices[keep], dtype=torch.long)]
            # Only uint8 crosses to the device: a quarter of the bytes of a float batch.
            crops, labels = to_device_async(crops, self.device), to_device_async(labels, self.device)
        batch = crops.float()  # 0..255, not yet scaled
        if params is not None:
            batch = self.augment(batch.mul_(1.0 / 255.0), params.select(keep), self.size)
            scale = 1.0
            task = self.dataset.task
            if isinstance(task, Regression) and task.points:  # the points move with their image
                labels = move_points(self.augment, labels, params.select(keep))
        else:
            batch, scale = resize_batch(batch, self.size), 1.0 / 255.0
        if normalize:
            # One fused pass: (x * scale - mean) / std.
            std, shift = self._normalizer()
            batch = torch.addcmul(shift, batch, scale / std)
        elif scale != 1.0:
            batch = batch.mul_(scale)
        return batch, labels

    def _device_store(self) -> DeviceStore | None:
        """The store on this loader's device, built once the dataset is fully decoded and if it fits."""
        if self.device_cache is False:
            return None
        if self._store is not None and self._store.device == self.device:
            return self._store
        dataset = self.dataset
        refused = self.device_cache is None and self._store_refused == self.device  # True overrides a refusal
        if refused or len(dataset.cache) + len(dataset.dropped) < len(dataset):
            return None
        rows = [index for index in range(len(dataset)) if index not in dataset.dropped]
        n_bytes = sum(dataset.cache.images[index].numel() for index in rows)
        if not rows or (self.device_cache is None and n_bytes > device_budget(self.device)):
            self._store_refused = self.device
            return None
        self._store = DeviceStore(rows, [dataset.cache.images[index] for index in rows],
                                  dataset.targets[rows], len(dataset), dataset.item_size, self.device)
        return self._store

    def upscale_to(self, size: int) -> None:
        """Batches of `size` px from items decoded at `size` at least (never an item upscaled twice), as
        loaders built at `size` would give; the images decoded smaller are decoded again.

        Example:
            >>> loader.upscale_to(64); loader.size, loader.dataset.item_size  # doctest: +SKIP
            (64, 64)
        """
        self.size = size
        if self.dataset.item_size < size:
            self.dataset.set_item_size(size)
            self._store, self._store_refused = None, None  # it holds the smaller images

    def preload(self) -> ImageDataLoader:
        """Decode every item now (in worker processes) instead of during the first epoch, and move
        the images to the device if `device_cache` allows. Returns the loader.

        Example:
            >>> dls.train.preload()  # doctest: +SKIP
        """
        order = np.arange(len(self.dataset))
        for _ in self._uint8_batches([order[start : start + self.batch_size]
                                      for start in range(0, len(order), self.batch_size)]):
            pass
        self.dataset.tried_all = True
        self._device_store()
        return self

    def check_decodable(self, every_class: bool = False) -> ImageDataLoader:
        """Decode every item now (as `preload`) and raise DataError if not one of them decodes, or with
        `every_class`, if a class with items here has not one item that decodes.

        A validation set whose every file is corrupt would otherwise let training run to the end and
        report NaN metrics; a class whose every training file is corrupt would train with no image of
        it (the class check runs on the file list, before decoding). Returns the loader.

        Raises:
            DataError: Every item failed to decode; the message names the folder and the first reasons.
                With `every_class`: a class lost all its items; the message names each such class, its
                folder and a reason.

        Example:
            >>> dls.valid.check_decodable()  # doctest: +SKIP
            >>> dls.train.check_decodable(every_class=True)  # doctest: +SKIP
        """
        if not self.dataset.tried_all:  # a second check (the CLI's, then fit_recipe's) decodes nothing again
            self.preload()
        dataset = self.dataset
        if len(dataset) and len(dataset.dropped) == len(dataset):
            folder = os.path.commonpath([str(path.parent) for path, _ in dataset.items])
            reasons = "; ".join(f"{dataset.items[index][0].name}: {reason}"
                                for index, reason in list(dataset.dropped.items())[:3])
            raise DataError(f"None of the {len(dataset)} images under {folder} could be decoded (first reasons: "
                            f"{reasons}). Replace the files with readable images (.jpg, .png, ...)")
        if every_class and not isinstance(dataset.task, Regression):
            self._check_every_class()
        return self

    def _check_every_class(self) -> None:
        """DataError naming each class that has items here but not one that decodes (counted after `preload`)."""
        dataset, n_classes = self.dataset, len(self.dataset.vocab)

        def counts(targets: torch.Tensor) -> torch.Tensor:  # images per class: class indices or multi-hot rows
            if targets.ndim == 1:
                return torch.bincount(targets[targets >= 0].long(), minlength=n_classes)
            return (targets > 0).sum(0)

        listed, decoded = counts(dataset.targets), counts(dataset.decoded_targets())
        lost = [index for index in range(n_classes) if listed[index] > 0 and decoded[index] == 0]
        if not lost:
            return
        described = []
        for index in lost:
            members = [item for item, target in enumerate(dataset.targets.tolist())
                       if (target == index if isinstance(target, int) else target[index] > 0)]
            folder = os.path.commonpath([str(dataset.items[item][0].parent) for item in members])
            first = members[0]
            described.append(f"{dataset.vocab[index]!r} (all {len(members)} of its files under {folder}; "
                             f"{dataset.items[first][0].name}: {dataset.dropped[first]})")
        split = "training" if self.training else "validation"
        raise DataError(f"{len(lost)} class(es) have {split} images but not one that could be decoded: "
                        f"{'; '.join(described)}. Expected at least one readable {split} image per class: replace "
                        "those files with readable images (.jpg, .png, ...), or remove the class's folders")

    def _normalizer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """std and -mean/std as [1,3,1,1] tensors on the device, built once per (device, stats)."""
        key = (self.device, self.mean, self.std)
        if self._norm_cache is None or self._norm_cache[0] != key:
            std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
            self._norm_cache = (key, std, -torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1) / std)
        return self._norm_cache[1], self._norm_cache[2]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch, 1 + self.rank])
        batches = self._batches()
        store = self._device_store()
        uint8_batches = self._uint8_batches(batches) if store is None else (None for _ in batches)
        # Under DDP every rank must take the same number of steps, or the gradient all-reduce hangs.
        # A training batch whose files all failed to decode is therefore replaced by a repeat of a
        # good one on that rank (the previous, or else the next), instead of being skipped.
        keep_count = self.training and self.world_size > 1
        owed, last = 0, None
        for indices, images in zip(batches, uint8_batches, strict=True):
            with _one_cpu_thread(self.device.type == "cpu"):
                result = self._finish(images, indices, rng, store=store)
                for transform in self.batch_transforms if result is not None else ():
                    result = transform(*result)
            if result is None:
                if keep_count and last is not None:
                    yield last
                elif keep_count:
                    owed += 1
                continue
            yield result
            last = result
            for _ in range(owed):
                yield result
            owed = 0
        if owed:
            raise DataError(f"None of the images of this process's share of the training set (rank {self.rank} "
                            f"of {self.world_size}) could be decoded; every rank needs at least one batch.")

    def one_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch this loader yields this epoch: `(images, targets)` on its device, normalized.

        Example:
            >>> images, targets = dls.valid.one_batch()  # doctest: +SKIP
        """
        batch = next(iter(self), None)
        if batch is None:
            raise DataError(f"This loader yields no batch: it has {len(self.dataset)} items for batches of "
                            f"{self.batch_size}{' (incomplete ones dropped)' if self.drop_last else ''}. "
                            "Use a smaller bs or add images.")
        return batch

    def preview(self, max_n: int, unique: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `max_n` items of this epoch, transformed as in training but not normalized.

        `unique` repeats the first item `max_n` times instead, each copy with its own augmentation draw.
        """
        indices = self._order()[:1].repeat(max_n) if unique else self._order()[:max_n]
        images = next(self._uint8_batches([indices]))
        result = self._finish(images, indices, np.random.default_rng([self.seed, self.epoch, 1 + self.rank]),
                              normalize=False)
        if result is None:
            raise DataError(f"None of the first {max_n} images could be decoded.")
        return result[0].cpu(), result[1].cpu()

    def show_batch(self, path: str | Path | None = None, max_n: int = 9, *, nrows: int | None = None,
                   ncols: int | None = None, figsize: tuple[float, float] | None = None,
                   unique: bool = False) -> Any:
        """Up to `max_n` images of this loader as it yields them (augmented in training), with labels.

        `nrows`/`ncols` shape the grid (at most nrows × ncols images). `unique=True` shows one image
        in `max_n` augmented versions, as fastai's. `path` None shows the grid inline in a notebook
        and returns the figure, or in a script saves batch.png and prints where.

        Example:
            >>> dls.valid.show_batch(max_n=4, nrows=1)  # doctest: +SKIP
            >>> dls.train.show_batch(max_n=8, nrows=2, unique=True)  # doctest: +SKIP
        """
        from unfreeze.plots import plot_image_grid  # matplotlib loads only when a figure is drawn

        if nrows and ncols:
            max_n = min(max_n, nrows * ncols)
        images, labels = self.preview(max_n, unique)
        pictures = [(image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy() for image in images]
        vocab, task = self.dataset.vocab, self.dataset.task
        # Unlabelled items (-1, or NaN rows for multi-label data) get no title.
        names = [task.labels_of(label, vocab) if task.labelled(label.unsqueeze(0))[0] else "" for label in labels]
        titles = [name if isinstance(name, str) else ";".join(map(_shown_label, name)) for name in names]
        points = None
        if isinstance(task, Regression) and task.points:  # marked on the image instead of a title
            side = images.shape[-1]
            points = [((label.reshape(-1, 2).numpy() + 1.0) * side / 2.0) for label in labels]
            titles = [""] * len(titles)
        return plot_image_grid(pictures, titles, path, nrows=nrows, ncols=ncols, figsize=figsize,
                               default_name="batch.png", points=points)

    def decode_uint8(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,S,S] of the given items after the item resize (centre crop), no augmentation."""
        item_size = self.dataset.item_size
        crops = [crop_item(self.dataset.image(int(index)), item_size, None) for index in indices]
        if not crops:
            return torch.empty(0, 3, item_size, item_size, dtype=torch.uint8)
        return torch.stack(crops)
