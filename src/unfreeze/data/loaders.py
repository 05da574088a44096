"""ImageDataset and ImageDataLoader: items → decoded-once uint8 cache → batches on the device.

The first pass decodes and resizes every image once, in worker processes, and the main process keeps
the uint8 results in memory up to a byte budget. Later epochs only crop, stack, move and augment.
On a GPU, a fully decoded dataset that fits moves to the GPU once (`DeviceStore`), and later epochs
gather their batches there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from unfreeze.data.decode import BadFileReport, DecodeJob, ImageSource, as_list, chw, decode_item, default_workers
from unfreeze.data.device_store import DeviceStore, device_budget
from unfreeze.data.sources import (
    DataError,
    DataWarning,
    check_root,
    csv_items,
    folder_items,
    name_func_items,
    name_re_items,
    warn_empty_classes,
)
from unfreeze.data.split import check_classes, new_seed, split_by_mask, split_items
from unfreeze.data.transforms import (
    RESIZE_METHODS,
    BatchAugment,
    crop_item,
    resize_batch,
    to_device_async,
)

__all__ = ["DecodedCache", "ImageDataLoader", "ImageDataLoaders", "ImageDataset"]


@contextmanager
def _one_cpu_thread(active: bool) -> Iterator[None]:
    # Batch-sized elementwise ops on the CPU run several times faster on one thread than on a pool
    # that competes with the model and the decoding workers (measured: 12,000 vs 2,000 images/s on
    # 2 busy cores). The caller's thread count is restored before each batch is handed over.
    previous = torch.get_num_threads()
    if active and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def default_cache_bytes() -> int:
    """The decoded-image cache's default budget: a quarter of the memory free now, at least 256 MiB."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name (macOS)
        return 2**31
    return max(2**28, free // 4)


class DecodedCache:
    """uint8 CHW images by item index, kept while their total size fits `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.used_bytes = max_bytes, 0
        self.images: dict[int, torch.Tensor] = {}
        self.full = False  # set, with one warning, the first time an image did not fit

    def __contains__(self, index: int) -> bool:
        return index in self.images

    def __len__(self) -> int:
        return len(self.images)

    def put(self, index: int, image: torch.Tensor) -> None:
        if index in self.images:
            return
        if self.used_bytes + image.numel() <= self.max_bytes:
            self.images[index] = image
            self.used_bytes += image.numel()
        elif not self.full:
            self.full = True
            warnings.warn(
                f"The decoded-image cache is full ({self.used_bytes / 2**20:.0f} MiB, cache_bytes={self.max_bytes}): "
                "images beyond it are decoded again every epoch, and the data cannot move to the GPU. "
                "Pass a larger cache_bytes to ImageDataLoaders if memory allows.",
                DataWarning, stacklevel=2,
            )


class ImageDataset:
    """(path, label) items with a vocab, and the cache of their decoded, item-resized images.

    Example:
        >>> dataset = ImageDataset([(Path("a.png"), "cat"), (Path("b.png"), "dog")], ["cat", "dog"])
        >>> dataset.labels()
        [0, 1]
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, str]],
        vocab: Sequence[str],
        *,
        sources: Sequence[ImageSource] | None = None,
        item_size: int = 224,
        resize_method: str = "crop",
        cache_bytes: int | None = None,
    ) -> None:
        self.items = [(Path(path), label) for path, label in items]
        self.vocab = list(vocab)
        self.sources = list(sources) if sources is not None else [path for path, _ in self.items]
        self.item_size, self.resize_method = item_size, resize_method
        self.cache = DecodedCache(default_cache_bytes() if cache_bytes is None else cache_bytes)
        self.dropped: dict[int, str] = {}  # index → why it could not be decoded
        lookup = {label: index for index, label in enumerate(self.vocab)}
        self._label_ids = [lookup.get(label, -1) for _, label in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> list[int]:
        """Class index per item (-1 for unlabelled items)."""
        return list(self._label_ids)

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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(uint8 [3,S,S] centre crop, class index), for inspection; training uses ImageDataLoader."""
        return crop_item(self.image(index), self.item_size, None).contiguous(), self._label_ids[index]


class ImageDataLoader:
    """Batches of (float [B,3,H,W] normalized, long [B]) on `device`, in an order set by (seed, epoch).

    Training loaders shuffle, random-crop and augment; others are deterministic.

    `device_cache` decides whether the decoded images move to the loader's device once the whole
    dataset is decoded: None (the default) does so on CUDA when they take at most a quarter of the
    free GPU memory; True always (any device); False never. Batches are identical either way.

    Example:
        >>> loader = ImageDataLoader(dataset, 64, training=True, augment=BatchAugment(), size=224)
        >>> loader.set_epoch(3)
        >>> images, labels = next(iter(loader))
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
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size = dataset, batch_size
        self.training = self.shuffle = training
        self.drop_last = drop_last
        self.size = size or dataset.item_size
        self.augment = augment if training else None
        self.seed, self.epoch = seed, 0
        self.device = torch.device(device)
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.worker_start_method: str | None = None  # None: the platform default (fork on Linux)
        self.rank, self.world_size = 0, 1
        self._norm_cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None
        self.device_cache = device_cache
        self._store: DeviceStore | None = None
        self._store_refused: torch.device | None = None  # the device a store did not fit on
        self._row_of = np.zeros(0, dtype=np.int64)  # item index → store row (-1: undecodable)
        self.set_normalization(mean, std)

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

    def _order(self) -> np.ndarray:
        n_items = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n_items)
        else:
            order = np.arange(n_items)
        if self.world_size == 1:
            return order
        if self.shuffle:
            total = -(-n_items // self.world_size) * self.world_size
            order = np.concatenate([order, order[: total - n_items]]) if total > n_items else order
            return order[self.rank :: self.world_size]
        return np.array_split(order, self.world_size)[self.rank]

    def _batches(self) -> list[np.ndarray]:
        order = self._order()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        return [order[start : start + self.batch_size] for start in range(0, stop, self.batch_size)]

    def __len__(self) -> int:
        n_items, world_size = len(self.dataset), self.world_size
        if self.shuffle:
            n_items = -(-n_items // world_size)  # padded to equal lengths
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
                multiprocessing_context=self.worker_start_method,
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
            newly_bad.warn("files that could not be decoded; they are left out of every later batch")

    def _finish(self, images: list[torch.Tensor | None] | None, indices: np.ndarray, rng: np.random.Generator,
                normalize: bool = True,
                store: DeviceStore | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        # Draws cover every slot of the batch, dropped or not, so the random stream never shifts.
        slots = len(indices)
        positions = rng.random((slots, 2)) if self.training else None
        params = self.augment.draw(rng, slots) if self.augment is not None else None
        if store is not None:
            rows = self._row_of[indices]
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
            labels = torch.tensor([self.dataset._label_ids[indices[slot]] for slot in keep], dtype=torch.long)
            # Only uint8 crosses to the device: a quarter of the bytes of a float batch.
            crops, labels = to_device_async(crops, self.device), to_device_async(labels, self.device)
        batch = crops.float()  # 0..255, not yet scaled
        if params is not None:
            batch = self.augment(batch.mul_(1.0 / 255.0), params.select(keep), self.size)
            scale = 1.0
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
        if self._store_refused == self.device or len(dataset.cache) + len(dataset.dropped) < len(dataset):
            return None
        rows = [index for index in range(len(dataset)) if index not in dataset.dropped]
        n_bytes = sum(dataset.cache.images[index].numel() for index in rows)
        if not rows or (self.device_cache is None and n_bytes > device_budget(self.device)):
            self._store_refused = self.device
            return None
        labels = dataset.labels()
        self._store = DeviceStore([dataset.cache.images[index] for index in rows], [labels[index] for index in rows],
                                  dataset.item_size, self.device)
        self._row_of = np.full(len(dataset), -1, dtype=np.int64)
        self._row_of[rows] = np.arange(len(rows))
        return self._store

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
        self._device_store()
        return self

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

    def preview(self, max_n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `max_n` items of this epoch, transformed as in training but not normalized."""
        indices = self._order()[:max_n]
        images = next(self._uint8_batches([indices]))
        result = self._finish(images, indices, np.random.default_rng([self.seed, self.epoch, 1 + self.rank]),
                              normalize=False)
        if result is None:
            raise DataError(f"None of the first {max_n} images could be decoded.")
        return result[0].cpu(), result[1].cpu()

    def decode_uint8(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,S,S] of the given items after the item resize (centre crop), no augmentation."""
        item_size = self.dataset.item_size
        crops = [crop_item(self.dataset.image(int(index)), item_size, None) for index in indices]
        if not crops:
            return torch.empty(0, 3, item_size, item_size, dtype=torch.uint8)
        return torch.stack(crops)


class ImageDataLoaders:
    """The training and validation loaders of one dataset, with its vocab, size and seed.

    Build one with `from_folder`, `from_name_re`, `from_name_func` or `from_csv`.

    Example:
        >>> from unfreeze.data import ImageDataLoaders, sample_path
        >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)
        >>> dls.show_batch(path="batch.png")
    """

    def __init__(self, train: ImageDataLoader, valid: ImageDataLoader, seed: int) -> None:
        self.train, self.valid, self.seed = train, valid, seed
        self.vocab = train.dataset.vocab

    @property
    def n_classes(self) -> int:
        return len(self.vocab)

    @property
    def size(self) -> int:
        return self.train.size

    @property
    def device(self) -> torch.device:
        return self.train.device

    def to(self, device: str | torch.device) -> ImageDataLoaders:
        """Make both loaders yield batches on `device` (augmentation then runs there too)."""
        self.train.device = self.valid.device = torch.device(device)
        return self

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalize every batch with the backbone's per-channel mean and std (3 values each)."""
        self.train.set_normalization(mean, std)
        self.valid.set_normalization(mean, std)

    def preload(self) -> ImageDataLoaders:
        """Decode both sets now rather than during the first epoch; on a GPU, also move them there
        when they fit (see `ImageDataLoader.device_cache`). The cache must hold the whole dataset:
        raise `cache_bytes` for large ones.

        Example:
            >>> dls = ImageDataLoaders.from_folder("data/fashion", size=112, device="cuda").preload()
        """
        self.train.preload()
        self.valid.preload()
        return self

    def test_dl(self, items: Sequence[ImageSource], batch_size: int | None = None) -> ImageDataLoader:
        """A loader over new images (paths, PIL images, HWC arrays, CHW/HWC tensors), validation
        transforms, labels -1. Undecodable files are left out with one warning; `dataset.dropped`
        lists their indices so predictions can be matched to inputs.

        Example:
            >>> loader = dls.test_dl(["new/cat.jpg", "new/dog.jpg"])
        """
        sources = list(items)
        missing = [str(source) for source in sources if isinstance(source, (str, Path)) and not Path(source).exists()]
        if missing:
            raise DataError(f"{len(missing)} test image path(s) do not exist: {', '.join(missing[:10])}")
        pairs = [(Path(source) if isinstance(source, (str, Path)) else Path(f"<in-memory image {index}>"), "")
                 for index, source in enumerate(sources)]
        reference = self.valid.dataset
        dataset = ImageDataset(pairs, self.vocab, sources=[Path(s) if isinstance(s, str) else s for s in sources],
                               item_size=reference.item_size, resize_method=reference.resize_method,
                               cache_bytes=reference.cache.max_bytes)
        return ImageDataLoader(dataset, batch_size or self.valid.batch_size, size=self.size, seed=self.seed,
                               device=self.device, num_workers=self.valid.num_workers,
                               mean=self.valid.mean, std=self.valid.std)

    def show_batch(self, path: str | Path = "batch.png", max_n: int = 9) -> Path:
        """Save a grid of up to `max_n` training images, augmented, with their labels, as a PNG.

        Example:
            >>> dls.show_batch(path="batch.png", max_n=9)
            PosixPath('batch.png')
        """
        from unfreeze.plots import plot_image_grid  # matplotlib loads only when a figure is drawn

        images, labels = self.train.preview(max_n)
        pictures = [(image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy() for image in images]
        return plot_image_grid(pictures, [self.vocab[label] for label in labels.tolist()], path)

    def __repr__(self) -> str:
        return (f"ImageDataLoaders({len(self.train.dataset)} train, {len(self.valid.dataset)} valid, "
                f"{self.n_classes} classes, size {self.size}, seed {self.seed})")

    @classmethod
    def _build(cls, train_items: list[tuple[Path, str]], valid_items: list[tuple[Path, str]], source: Path, *,
               seed: int, size: int, bs: int, item_size: int | None, resize_method: str, augment: bool,
               cache_bytes: int | None, num_workers: int | None, device: str | torch.device | None,
               skipped: BadFileReport, empty_classes: list[str]) -> ImageDataLoaders:
        if resize_method not in RESIZE_METHODS:
            raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {resize_method!r}")
        item_size = item_size or size
        if size < 1 or bs < 1 or item_size < size:
            raise ValueError(f"Expected size >= 1, bs >= 1 and item_size >= size; got {size}, {bs}, {item_size}")
        skipped.warn()
        warn_empty_classes(empty_classes)
        vocab = check_classes(train_items, valid_items, source)
        n_total = len(train_items) + len(valid_items)
        cache_bytes = default_cache_bytes() if cache_bytes is None else cache_bytes
        datasets = [ImageDataset(items, vocab, item_size=item_size, resize_method=resize_method,
                                 cache_bytes=cache_bytes * len(items) // n_total)
                    for items in (train_items, valid_items)]
        common = {"size": size, "seed": seed, "device": device or "cpu", "num_workers": num_workers}
        train = ImageDataLoader(datasets[0], bs, training=True, drop_last=len(train_items) > bs,
                                augment=BatchAugment() if augment else None, **common)
        return cls(train, ImageDataLoader(datasets[1], bs, **common), seed)

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid",
                    valid_pct: float | None = None, seed: int | None = None, size: int = 224, bs: int = 64, *,
                    item_size: int | None = None, resize_method: str = "crop", augment: bool = True,
                    cache_bytes: int | None = None, num_workers: int | None = None,
                    device: str | torch.device | None = None) -> ImageDataLoaders:
        """Load `path/train/<class>/*` and `path/valid/<class>/*`, or with `valid_pct` split
        `path/<class>/*` (or `path/train/<class>/*` if it exists) at random.

        `item_size` > `size` enables presizing; `resize_method` is "crop", "pad" or "squish";
        `cache_bytes` bounds the decoded-image cache (default: a quarter of the free memory);
        `num_workers` decodes the first pass.

        Example:
            >>> dls = ImageDataLoaders.from_folder("data/fashion", size=64, bs=32)
        """
        skipped, empty_classes = BadFileReport(), []
        root = check_root(path, f"a folder with {train}/<class>/ and {valid}/<class>/ subfolders of images")
        seed = new_seed() if seed is None else seed
        if valid_pct is None:
            folders = [root / train, root / valid]
            absent = [str(folder) for folder in folders if not folder.is_dir()]
            if absent:
                raise DataError(f"{' and '.join(absent)} not found. Expected {root}/{train}/<class>/* and "
                                f"{root}/{valid}/<class>/*, or pass valid_pct=0.2 to split {root}/<class>/*.")
            train_items, valid_items = (folder_items(folder, skipped, empty_classes) for folder in folders)
        else:
            class_root = root / train if (root / train).is_dir() else root
            train_items, valid_items = split_items(folder_items(class_root, skipped, empty_classes), valid_pct, seed)
        return cls._build(train_items, valid_items, root, seed=seed, size=size, bs=bs, item_size=item_size,
                          resize_method=resize_method, augment=augment, cache_bytes=cache_bytes,
                          num_workers=num_workers, device=device, skipped=skipped, empty_classes=empty_classes)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Sequence[str | Path] | None, pat: str,
                     valid_pct: float = 0.2, seed: int | None = None, size: int = 224, bs: int = 64, *,
                     item_size: int | None = None, resize_method: str = "crop", augment: bool = True,
                     cache_bytes: int | None = None, num_workers: int | None = None,
                     device: str | torch.device | None = None) -> ImageDataLoaders:
        """Label each file by group 1 of regex `pat` searched in its name (None lists `path`).

        Example:
            >>> dls = ImageDataLoaders.from_name_re("pets/images", None, r"^(.+)_\\d+\\.jpg$", size=224)
        """
        skipped, root = BadFileReport(), check_root(path, "a folder of images")
        items = name_re_items(root, fnames, pat, skipped)
        return cls._from_labelled(items, None, root, valid_pct, seed, size, bs, item_size, resize_method, augment,
                                  cache_bytes, num_workers, device, skipped)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Sequence[str | Path] | None,
                       label_func: Callable[[Path], str], valid_pct: float = 0.2, seed: int | None = None,
                       size: int = 224, bs: int = 64, *, item_size: int | None = None,
                       resize_method: str = "crop", augment: bool = True, cache_bytes: int | None = None,
                       num_workers: int | None = None,
                       device: str | torch.device | None = None) -> ImageDataLoaders:
        """Label each file by `label_func(path)`; cats vs dogs: `lambda p: "cat" if p.name[0].isupper() ...`.

        Example:
            >>> dls = ImageDataLoaders.from_name_func("pets", None, lambda p: p.name.split("_")[0])
        """
        skipped, root = BadFileReport(), check_root(path, "a folder of images")
        items = name_func_items(root, fnames, label_func, skipped)
        return cls._from_labelled(items, None, root, valid_pct, seed, size, bs, item_size, resize_method, augment,
                                  cache_bytes, num_workers, device, skipped)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str = "labels.csv", fn_col: int | str = 0,
                 label_col: int | str = 1, valid_col: int | str | None = None, valid_pct: float = 0.2,
                 seed: int | None = None, size: int = 224, bs: int = 64, *, item_size: int | None = None,
                 resize_method: str = "crop", augment: bool = True, cache_bytes: int | None = None,
                 num_workers: int | None = None, device: str | torch.device | None = None) -> ImageDataLoaders:
        """Items from `path/csv_fname` (header row; file names relative to `path`); `valid_col` marks
        validation rows (1/true/yes), otherwise `valid_pct` splits at random.

        Example:
            >>> dls = ImageDataLoaders.from_csv("planes", "labels.csv", fn_col="file", label_col="label")
        """
        skipped, root = BadFileReport(), check_root(path, f"a folder holding {csv_fname} and the images")
        items, is_valid = csv_items(root, csv_fname, fn_col, label_col, valid_col, skipped)
        return cls._from_labelled(items, is_valid, root, valid_pct, seed, size, bs, item_size, resize_method,
                                  augment, cache_bytes, num_workers, device, skipped)

    @classmethod
    def _from_labelled(cls, items: list[tuple[Path, str]], is_valid: list[bool] | None, root: Path,
                       valid_pct: float, seed: int | None, size: int, bs: int, item_size: int | None,
                       resize_method: str, augment: bool, cache_bytes: int | None, num_workers: int | None,
                       device: str | torch.device | None, skipped: BadFileReport) -> ImageDataLoaders:
        seed = new_seed() if seed is None else seed
        train_items, valid_items = (split_by_mask(items, is_valid) if is_valid is not None
                                    else split_items(items, valid_pct, seed))
        return cls._build(train_items, valid_items, root, seed=seed, size=size, bs=bs, item_size=item_size,
                          resize_method=resize_method, augment=augment, cache_bytes=cache_bytes,
                          num_workers=num_workers, device=device, skipped=skipped, empty_classes=[])
