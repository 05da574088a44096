"""fastai's mid-level `TfmdLists` and `Datasets`, the basics: items through pipelines of functions, split,
and `dataloaders()` into unfreeze's `ImageDataLoaders`.

A pipeline is a list of callables applied in order (`[PILImage.create]`, `[parent_label, Categorize]`; a
class is instantiated, as fastai does). `Categorize` learns its vocab from the training items. For
`dataloaders()`, the input pipeline must open files with `PILImage.create` (what comes before it gives
the path) and the target pipeline must end in `Categorize` (what comes before it gives the class name);
`after_item` / `after_batch` take `Resize`, `aug_transforms` and `Normalize` as `item_tfms` / `batch_tfms`
do, and fastai's `ToTensor` / `IntToFloatTensor` (unfreeze's loaders always do both).

Example:
    >>> tfms = [[PILImage.create], [parent_label, Categorize]]  # doctest: +SKIP
    >>> dsets = Datasets(files, tfms, splits=RandomSplitter(seed=42)(files))  # doctest: +SKIP
    >>> dls = dsets.dataloaders(bs=8, after_item=[Resize(64), ToTensor])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from unfreeze.data.blocks import PILImage
from unfreeze.data.dataloaders import ImageDataLoaders
from unfreeze.data.decode import BadFileReport
from unfreeze.data.sources import DataError
from unfreeze.data.split import new_seed

__all__ = ["Categorize", "Datasets", "IntToFloatTensor", "TfmdLists", "ToTensor"]


class Categorize:
    """fastai's `Categorize`: a class name as its index in the vocab (sorted training labels unless given).

    Example:
        >>> categorize = Categorize(vocab=["cat", "dog"])
        >>> int(categorize("dog")), categorize.decode(0)
        (1, 'cat')
    """

    def __init__(self, vocab: Sequence[str] | None = None, sort: bool = True, add_na: bool = False) -> None:
        self.vocab = None if vocab is None else list(vocab)
        self.sort = sort

    def setup(self, labels: Sequence[Any]) -> None:
        """Learn the vocab from the training items' labels (unless one was given)."""
        if self.vocab is None:
            unique = list(dict.fromkeys(str(label) for label in labels))
            self.vocab = sorted(unique) if self.sort else unique

    def __call__(self, label: Any) -> torch.Tensor:
        if self.vocab is None or str(label) not in self.vocab:
            raise DataError(f"Categorize: {label!r} is not in the vocab {self.vocab}. Labels come from the training "
                            "items; a validation-only class cannot be encoded.")
        return torch.tensor(self.vocab.index(str(label)))

    def decode(self, index: Any) -> str:
        return (self.vocab or [])[int(index)]


class ToTensor:
    """fastai's `ToTensor` (a PIL image as a uint8 CHW tensor); in `after_item` a no-op for unfreeze's loaders."""

    def __call__(self, image: Any) -> torch.Tensor:
        import numpy as np

        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class IntToFloatTensor:
    """fastai's `IntToFloatTensor` (uint8 to float in [0, 1]); in `after_batch` a no-op for unfreeze's loaders."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() / 255.0


def _pipeline(tfms: Any) -> list[Callable[[Any], Any]]:
    steps = list(tfms) if isinstance(tfms, (list, tuple)) else [tfms]
    return [step() if isinstance(step, type) else step for step in steps]


class TfmdLists:
    """fastai's `TfmdLists(items, tfms, splits=None)`: `tls[i]` is item i through the pipeline `tfms`.

    Example:
        >>> tls = TfmdLists(["a_1", "b_2", "a_3"], [lambda s: s.split("_")[0], Categorize], splits=[[0, 1], [2]])
        >>> int(tls[2]), tls.vocab, len(tls.train)
        (0, ['a', 'b'], 2)
    """

    def __init__(self, items: Sequence[Any], tfms: Any, splits: Sequence[Sequence[int]] | None = None) -> None:
        self.items = list(items)
        self.tfms = _pipeline(tfms)
        self.splits = [list(map(int, part)) for part in splits] if splits is not None else [list(range(len(items)))]
        for position, step in enumerate(self.tfms):
            if isinstance(step, Categorize):  # its vocab comes from the training items, as fastai's setup
                step.setup([self._through(item, self.tfms[:position]) for item in self.subset_items(0)])

    @staticmethod
    def _through(item: Any, steps: Sequence[Callable[[Any], Any]]) -> Any:
        for step in steps:
            item = step(item)
        return item

    def subset_items(self, index: int) -> list[Any]:
        return [self.items[i] for i in self.splits[index]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self._through(self.items[index], self.tfms)

    @property
    def train(self) -> TfmdLists:
        return self._subset(0)

    @property
    def valid(self) -> TfmdLists:
        return self._subset(1)

    def _subset(self, index: int) -> TfmdLists:
        if index >= len(self.splits):
            raise DataError("This TfmdLists has no splits: pass splits=(train indices, valid indices).")
        subset = TfmdLists.__new__(TfmdLists)
        subset.items, subset.tfms = self.subset_items(index), self.tfms
        subset.splits = [list(range(len(subset.items)))]
        return subset

    @property
    def vocab(self) -> list[str] | None:
        """The vocab of the pipeline's `Categorize`, if it has one."""
        return next((step.vocab for step in self.tfms if isinstance(step, Categorize)), None)

    def before(self, kind: type, item: Any) -> Any:
        """The item through the steps before the first `kind` step (the path before `PILImage.create`)."""
        for position, step in enumerate(self.tfms):
            if step is kind.create if kind is PILImage else isinstance(step, kind):
                return self._through(item, self.tfms[:position])
        raise DataError(f"Datasets.dataloaders: a pipeline needs {kind.__name__}"
                        f"{'.create' if kind is PILImage else ''}: the input pipeline opens files with "
                        "PILImage.create, the target pipeline ends in Categorize.")


class Datasets:
    """fastai's `Datasets(items, tfms=[[x steps], [y steps]], splits=...)`: `dsets[i]` is the tuple of item i
    through each pipeline; `train`, `valid`, `vocab`; `dataloaders()` builds `ImageDataLoaders`.

    Example:
        >>> dsets = Datasets(files, [[PILImage.create], [parent_label, Categorize]], splits=splits)  # doctest: +SKIP
        >>> x, y = dsets.valid[0]  # doctest: +SKIP
    """

    def __init__(self, items: Sequence[Any], tfms: Sequence[Any],
                 splits: Sequence[Sequence[int]] | None = None) -> None:
        self.items = list(items)
        self.tls = [TfmdLists(self.items, pipeline, splits) for pipeline in tfms]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return tuple(tls[index] for tls in self.tls)

    @property
    def train(self) -> _Subset:
        return _Subset([tls.train for tls in self.tls])

    @property
    def valid(self) -> _Subset:
        return _Subset([tls.valid for tls in self.tls])

    @property
    def vocab(self) -> list[str] | None:
        return self.tls[-1].vocab

    def dataloaders(self, bs: int = 64, after_item: Any = None, after_batch: Any = None, *, seed: int | None = None,
                    path: str | Path = ".", **options: Any) -> ImageDataLoaders:
        """`ImageDataLoaders` of these items: paths from the input pipeline, class names from the target's.

        Example:
            >>> dls = dsets.dataloaders(bs=8, after_item=[Resize(64), ToTensor],
            ...                         after_batch=[IntToFloatTensor, *aug_transforms()])  # doctest: +SKIP
        """
        if len(self.tls) != 2:
            raise DataError(f"Datasets.dataloaders builds image loaders from 2 pipelines (input, target); "
                            f"this one has {len(self.tls)}.")
        inputs, targets = self.tls
        pairs = [(Path(inputs.before(PILImage, item)), str(targets.before(Categorize, item))) for item in self.items]
        train, valid = ([pairs[i] for i in part] for part in (*inputs.splits, [])[:2])
        skip = (ToTensor, IntToFloatTensor)
        item_tfms = [step for step in _pipeline(after_item or []) if not isinstance(step, skip)]
        batch_tfms = [step for step in _pipeline(after_batch or []) if not isinstance(step, skip)]
        return ImageDataLoaders._build(
            train, valid, Path(path), seed=new_seed() if seed is None else seed, size=options.get("size"), bs=bs,
            item_size=None, resize_method=None, augment=None, cache_bytes=options.get("cache_bytes"),
            num_workers=options.get("num_workers"), device=options.get("device"), skipped=BadFileReport(),
            empty_classes=[], item_tfms=item_tfms or None, batch_tfms=batch_tfms or None, path=Path(path))


class _Subset:
    """`dsets.train` / `dsets.valid`: indexable like the Datasets, over one split."""

    def __init__(self, lists: list[TfmdLists]) -> None:
        self.lists = lists

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return tuple(tls[index] for tls in self.lists)

    def __len__(self) -> int:
        return len(self.lists[0])
