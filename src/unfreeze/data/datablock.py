"""fastai's DataBlock for image classification (single- and multi-label) and regression (numbers, points),
built on unfreeze's loaders.

A `DataBlock` only says how to find items, label them and split them; `dataloaders(source)` hands
the resulting (path, label) lists to the same builder the `ImageDataLoaders` factories use, so the
result is a plain `ImageDataLoaders`. The source may be a folder, a list of items or a pandas
DataFrame, whose rows are then the items (fastbook chapter 6). The helpers (`get_image_files`,
`parent_label`, `RegexLabeller`, `using_attr`, `RandomSplitter`, `GrandparentSplitter`) are ordinary
callables, usable on their own, as are `FuncSplitter` and `IndexSplitter`; the blocks and
`PILImage.create` live in `unfreeze.data.blocks`.

Example:
    >>> pets = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,  # doctest: +SKIP
    ...                  splitter=RandomSplitter(valid_pct=0.2, seed=42),
    ...                  get_y=using_attr(RegexLabeller(r"^(.+)_\\d+\\.jpg$"), "name"),
    ...                  item_tfms=Resize(460), batch_tfms=aug_transforms(size=224))
    >>> dls = pets.dataloaders("pets/images", bs=32)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unfreeze.data.blocks import (
    CategoryBlock,
    ImageBlock,
    MultiCategoryBlock,
    PILImage,
    PILImageBW,
    PointBlock,
    RegressionBlock,
    block_task,
    is_block,
)
from unfreeze.data.dataloaders import ImageDataLoaders
from unfreeze.data.decode import decode_item
from unfreeze.data.regression import numbers_from, output_names, points_from
from unfreeze.data.sources import DataError, SkippedFiles, check_file, check_root, list_image_files
from unfreeze.data.spellings import resolve_pipeline
from unfreeze.data.split import classes_of, fastai_permutation_split, new_seed
from unfreeze.tasks import Label, MultiLabel, Regression, Task, point_names

if TYPE_CHECKING:  # fastcore loads when a list is made, as pyproject promises
    from fastcore.foundation import L

__all__ = [
    "CategoryBlock",
    "ColReader",
    "ColSplitter",
    "DataBlock",
    "FuncSplitter",
    "GrandparentSplitter",
    "ImageBlock",
    "IndexSplitter",
    "MultiCategoryBlock",
    "PILImage",
    "PILImageBW",
    "PointBlock",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "get_image_files",
    "parent_label",
    "using_attr",
    "verify_images",
]

Splits = tuple[list[int], list[int]]


def _describe(function: Any) -> str:
    return getattr(function, "__name__", None) or repr(function)


def _shown(item: Any) -> str:
    """An item on one short line: a DataFrame row's repr spans several."""
    text = " ".join(repr(item).split())
    return text if len(text) <= 100 else text[:97] + "..."


def get_image_files(path: str | Path, recurse: bool = True, folders: str | Sequence[str] | None = None) -> L:
    """The image files under `path`, sorted (hidden files and other extensions left out), as fastai's `L`.

    Args:
        path: The folder to list.
        recurse: Also list subfolders, at any depth.
        folders: Only this subfolder of `path`, or these (files directly in `path` are then left out).

    Example:
        >>> files = get_image_files("pets/images")  # doctest: +SKIP
        >>> files[0]  # doctest: +SKIP
        PosixPath('pets/images/Abyssinian_1.jpg')
    """
    root = check_root(path, "a folder of images")
    if isinstance(folders, str):  # fastai's folders="train": one name, not its letters
        folders = [folders]
    tops = [root / folder for folder in folders] if folders else [root]
    missing = [str(top) for top in tops if not top.is_dir()]
    if missing:
        raise DataError(f"get_image_files: {', '.join(missing)} not found. Expected subfolders of {root}; "
                        f"it has: {', '.join(sorted(p.name for p in root.iterdir() if p.is_dir())) or 'none'}.")
    skipped, files = SkippedFiles(), []
    for top in tops:
        if recurse:
            files.extend(list_image_files(top, skipped))
        else:
            files.extend(sorted(p for p in top.iterdir()
                                if p.is_file() and not p.name.startswith(".") and check_file(p, skipped)))
    # Other files (a CSV, a README) are expected in a data folder; only odd image files are worth a warning.
    odd = SkippedFiles()
    for file, reason in skipped.entries:
        if not reason.startswith("not an image extension"):
            odd.add(file, reason)
    odd.warn("files that look like images but cannot be read")
    from fastcore.foundation import L

    return L(sorted(files))  # fastai's list: files.map(...), files.attrgot("name"), files[mask]


def verify_images(files: Sequence[str | Path]) -> L:
    """fastai's `verify_images`: the files that do not decode as images, as an `L` (fastbook chapter 2).

    A file counts as broken when training would drop it: not an image, a format unfreeze does not
    decode, or cut off part way. The usual next step deletes them: `failed.map(Path.unlink)`.

    Example:
        >>> failed = verify_images(get_image_files("bears"))  # doctest: +SKIP
        >>> failed.map(Path.unlink)  # doctest: +SKIP
    """
    # The same decoder as training at a thumbnail size: JPEGs decode at 1/8 scale, yet to the last byte.
    from fastcore.foundation import L

    return L(file for file in files if decode_item(file, 32, "squish")[0] is None)


def parent_label(path: str | Path) -> str:
    """The name of the folder holding the file: `parent_label("train/cat/1.jpg") == "cat"`.

    Example:
        >>> parent_label("train/cat/1.jpg")
        'cat'
    """
    return Path(path).parent.name


class RegexLabeller:
    """Label = group 1 of `pat`, searched in `str(item)` (`re.match` from the start with `match=True`).

    On a Path the search runs over the whole path; label by the name with
    `using_attr(RegexLabeller(pat), "name")`.

    Example:
        >>> RegexLabeller(r"^(.+)_\\d+\\.jpg$")("great_pyrenees_173.jpg")
        'great_pyrenees'
    """

    def __init__(self, pat: str, match: bool = False) -> None:
        self.pat, self.match = pat, match
        self.regex = re.compile(pat)
        if self.regex.groups < 1:
            raise ValueError(f"RegexLabeller: the pattern {pat!r} has no group. Expected group 1 to capture the "
                             r"label, e.g. r'^(.+)_\d+\.jpg$' for great_pyrenees_173.jpg.")

    def __call__(self, item: Any) -> str:
        text = str(item)
        found = (self.regex.match if self.match else self.regex.search)(text)
        if found is None or found.group(1) is None:
            hint = (" The item is a full path: to label by file name use using_attr(RegexLabeller(pat), 'name')."
                    if isinstance(item, Path) else "")
            raise DataError(f"RegexLabeller: the pattern {self.pat!r} does not match {text!r} (from {item}). "
                            f"Expected group 1 to capture the label.{hint}")
        return found.group(1)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat!r}{', match=True' if self.match else ''})"


class _UsingAttr:
    def __init__(self, function: Callable[[Any], Any], attr: str) -> None:
        self.function, self.attr = function, attr

    def __call__(self, item: Any) -> Any:
        return self.function(getattr(item, self.attr))

    def __repr__(self) -> str:
        return f"using_attr({_describe(self.function)}, {self.attr!r})"


def using_attr(function: Callable[[Any], Any], attr: str) -> Callable[[Any], Any]:
    """`function` applied to `item.<attr>`: `using_attr(RegexLabeller(pat), "name")` labels by file name.

    Example:
        >>> using_attr(str.upper, "name")(Path("pets/cat_1.jpg"))
        'CAT_1.JPG'
    """
    return _UsingAttr(function, attr)


class ColReader:
    """fastai's `ColReader(cols, pref, suff, label_delim)`: read a DataFrame row's column(s).

    `pref` and `suff` wrap the value as text (a `Path` prefix gets a separator after it); with
    `label_delim` the value is split into a list of labels. Several columns give a list of values.

    Example:
        >>> row = {"fname": "0001.jpg", "labels": "cat dog"}
        >>> ColReader("fname", pref="train/")(row), ColReader("labels", label_delim=" ")(row)
        ('train/0001.jpg', ['cat', 'dog'])
    """

    def __init__(self, cols: int | str | Sequence[int | str], pref: str | Path = "", suff: str = "",
                 label_delim: str | None = None) -> None:
        self.cols = list(cols) if isinstance(cols, (list, tuple)) else [cols]
        self.pref = str(pref) + os.path.sep if isinstance(pref, Path) else pref
        self.suff, self.label_delim = suff, label_delim

    def _read(self, row: Any, col: int | str) -> Any:
        value = row.iloc[col] if isinstance(col, int) and hasattr(row, "iloc") else row[col]
        if self.label_delim is not None:
            return value.split(self.label_delim) if len(value) > 0 else []
        return f"{self.pref}{value}{self.suff}" if self.pref or self.suff else value

    def __call__(self, row: Any) -> Any:
        values = [self._read(row, col) for col in self.cols]
        return values[0] if len(values) == 1 else values

    def __repr__(self) -> str:
        return f"ColReader({self.cols[0] if len(self.cols) == 1 else self.cols!r})"


def ColSplitter(col: int | str = "is_valid", on: Any = None) -> Callable[[Any], Splits]:
    """fastai's `ColSplitter`: the DataFrame's rows whose `col` is true (or equals `on`, or is in a list
    `on`) are the validation set.

    Example:
        >>> splitter = ColSplitter("is_valid")
        >>> splitter(pd.DataFrame({"is_valid": [False, True, False]}))  # doctest: +SKIP
        ([0, 2], [1])
    """
    def split(frame: Any) -> Splits:
        if not _is_dataframe(frame):
            raise DataError(f"ColSplitter({col!r}) splits a DataFrame's rows; got {type(frame).__name__}. Pass the "
                            "DataFrame to dataloaders(df), or use RandomSplitter or FuncSplitter for other items.")
        column = frame.iloc[:, col] if isinstance(col, int) else frame[col]
        if on is None:
            if column.dtype.kind not in "biuf":  # fastai's astype(bool) would make every non-empty string true
                raise DataError(f"ColSplitter: column {col!r} holds text ({column.iloc[0]!r}, ...); expected True or "
                                "False per row. Convert it, e.g. df[col] = df[col] == 'True', or pass on=<value>.")
            is_valid = column.to_numpy().astype(bool)
        else:
            is_valid = column.isin(on).to_numpy() if isinstance(on, (list, tuple, set)) else (column == on).to_numpy()
        return [i for i, flag in enumerate(is_valid) if not flag], [i for i, flag in enumerate(is_valid) if flag]
    split.__name__ = f"ColSplitter({col!r}{'' if on is None else f', on={on!r}'})"  # as summary() and errors name it
    return split


@dataclass(frozen=True)
class RandomSplitter:
    """Split items at random, as fastai 2.8 does: with a seed, the same validation indices as fastai's
    (`torch.randperm(n)` under the seed; its first `int(valid_pct * n)` indices are the validation set).

    Example:
        >>> RandomSplitter(valid_pct=0.2, seed=42)(list(range(10)))
        ([1, 8, 4, 5, 0, 9, 3, 7], [2, 6])
    """

    valid_pct: float = 0.2
    seed: int | None = None

    def __call__(self, items: Sequence[Any]) -> Splits:
        return fastai_permutation_split(len(items), self.valid_pct, new_seed() if self.seed is None else self.seed)


class FuncSplitter:
    """fastai's `FuncSplitter(func)`: items for which `func(item)` is true go to validation.

    Example:
        >>> FuncSplitter(lambda name: name.startswith("13"))(["01/a.jpg", "13/b.jpg"])
        ([0], [1])
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        if not callable(func):
            raise TypeError(f"FuncSplitter takes a function item -> bool, got {func!r}.")
        self.func = func

    def __call__(self, items: Sequence[Any]) -> Splits:
        flags = [bool(self.func(item)) for item in _rows(items)]
        return [i for i, flag in enumerate(flags) if not flag], [i for i, flag in enumerate(flags) if flag]


class IndexSplitter:
    """fastai's `IndexSplitter(valid_idx)`: the items at these positions are the validation set.

    Example:
        >>> IndexSplitter([1])(["a", "b", "c"])
        ([0, 2], [1])
    """

    def __init__(self, valid_idx: Sequence[int]) -> None:
        self.valid_idx = [int(index) for index in valid_idx]

    def __call__(self, items: Sequence[Any]) -> Splits:
        outside = [index for index in self.valid_idx if not -len(items) <= index < len(items)]
        if outside:
            raise DataError(f"IndexSplitter: indices {outside[:5]} are outside the {len(items)} items.")
        valid = sorted({index % len(items) for index in self.valid_idx})
        chosen = set(valid)
        return [index for index in range(len(items)) if index not in chosen], valid


def _rows(items: Sequence[Any]) -> list[Any]:
    """The items one by one: a DataFrame's rows, or the sequence itself."""
    return [row for _, row in items.iterrows()] if _is_dataframe(items) else list(items)


@dataclass(frozen=True)
class GrandparentSplitter:
    """Split by the grandparent folder: `train/<class>/x.jpg` to training, `valid/<class>/x.jpg` to
    validation; other items are left out.

    Example:
        >>> GrandparentSplitter()([Path("train/cat/1.jpg"), Path("valid/cat/2.jpg")])
        ([0], [1])
    """

    train_name: str = "train"
    valid_name: str = "valid"

    def __call__(self, items: Sequence[Any]) -> Splits:
        grandparents = [Path(item).parent.parent.name for item in items]
        return ([i for i, name in enumerate(grandparents) if name == self.train_name],
                [i for i, name in enumerate(grandparents) if name == self.valid_name])


def _is_dataframe(source: Any) -> bool:
    # Duck-typed, so that pandas is imported only by the user who has a DataFrame.
    return hasattr(source, "iloc") and hasattr(source, "columns")


class DataBlock:
    """fastai's DataBlock for image classification: how to get, label and split items, and transforms.

    Args:
        blocks: `(ImageBlock, CategoryBlock)`, `(ImageBlock, MultiCategoryBlock)` for multi-label data,
            `(ImageBlock, RegressionBlock)` for numbers or `(ImageBlock, PointBlock)` for points (see
            `unfreeze.data.blocks`); other blocks (segmentation, boxes) raise.
        get_items: `source -> items` (usually `get_image_files`); None: the source is the items (a
            list, or a DataFrame whose rows are the items).
        splitter: `items -> (train indices, valid indices)`; it gets what `get_items` returned, or
            the source itself (the DataFrame); default `RandomSplitter(0.2)`.
        get_y: `item -> label` (`parent_label`, `RegexLabeller`, `using_attr(...)`, any callable); a
            list of callables is applied in turn. With `MultiCategoryBlock`: `item -> list of labels`.
        get_x: `item -> image path`; default: the item itself.
        item_tfms, batch_tfms: `Resize`, `RandomResizedCrop`, `aug_transforms`, `Normalize` (see
            `unfreeze.data.spellings`).

    Example:
        >>> block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,  # doctest: +SKIP
        ...                   splitter=RandomSplitter(0.2, seed=42), get_y=parent_label, item_tfms=Resize(64))
        >>> dls = block.dataloaders("data", bs=16)  # doctest: +SKIP
        >>> block.summary("data")  # doctest: +SKIP
    """

    def __init__(self, blocks: Sequence[Any] = (ImageBlock, CategoryBlock),
                 get_items: Callable[[Any], Any] | None = None,
                 splitter: Callable[[Sequence[Any]], Splits] | None = None,
                 get_y: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | None = None,
                 get_x: Callable[[Any], Any] | None = None, item_tfms: Any = None, batch_tfms: Any = None) -> None:
        blocks = tuple(blocks)
        if len(blocks) != 2 or not is_block(blocks[0], ImageBlock):
            found = ", ".join(getattr(block, "__name__", type(block).__name__) for block in blocks)
            raise ValueError(f"unfreeze's DataBlock takes an image and one target: expected blocks=(ImageBlock, "
                             f"CategoryBlock | MultiCategoryBlock | RegressionBlock | PointBlock), got ({found}).")
        self.task: Task = block_task(blocks[1])
        self.multi_label = isinstance(self.task, MultiLabel)
        self.n_out = getattr(blocks[1], "n_out", None) if not isinstance(blocks[1], type) else None
        if get_y is None:
            raise ValueError("DataBlock needs get_y, the function from an item to its label: parent_label, "
                             "RegexLabeller(pat), using_attr(RegexLabeller(pat), 'name') or your own function.")
        getters = list(get_y) if isinstance(get_y, (list, tuple)) else [get_y]
        not_callable = [repr(getter) for getter in [*getters, get_items, get_x, splitter]
                        if getter is not None and not callable(getter)]
        if not_callable:
            raise TypeError(f"DataBlock: get_items, splitter, get_x and get_y must be callables; got "
                            f"{', '.join(not_callable)}.")
        self.get_items, self.get_x, self.get_y = get_items, get_x, getters
        self.splitter = splitter if splitter is not None else RandomSplitter(0.2)
        self.item_tfms, self.batch_tfms = item_tfms, batch_tfms
        # Check the transforms now, where the mistake is written, not at the first dataloaders call.
        resolve_pipeline(item_tfms, batch_tfms, size=None, item_size=None, resize_method=None, augment=None)

    def new(self, item_tfms: Any = None, batch_tfms: Any = None) -> DataBlock:
        """The same block with other transforms (fastai's `bears.new(item_tfms=...)`); None keeps the current.

        Example:
            >>> squished = block.new(item_tfms=Resize(128, ResizeMethod.Squish))  # doctest: +SKIP
        """
        block = copy.copy(self)
        block.item_tfms = self.item_tfms if item_tfms is None else item_tfms
        block.batch_tfms = self.batch_tfms if batch_tfms is None else batch_tfms
        resolve_pipeline(block.item_tfms, block.batch_tfms, size=None, item_size=None, resize_method=None,
                         augment=None)
        return block

    def _label(self, item: Any, file: Path) -> Label:
        value = item
        for getter in self.get_y:
            try:
                value = getter(value)
            except DataError:
                raise
            except Exception as error:
                raise DataError(f"get_y ({_describe(getter)}) failed on {_shown(item)}: {error!r}. Expected a function "
                                "from an item (a Path from get_image_files, a DataFrame row) to its label.") from error
        if isinstance(self.task, Regression):
            numbers = points_from(value, _shown(item), file) if self.task.points else numbers_from(value, _shown(item))
            if self.n_out is not None and len(numbers) != self.n_out:
                raise DataError(f"RegressionBlock(n_out={self.n_out}): get_y gave {len(numbers)} value(s) for "
                                f"{_shown(item)}. Return {self.n_out} number(s) per item.")
            return numbers  # type: ignore[return-value]  # a regression label: numbers
        if not self.multi_label:
            return str(value)
        if isinstance(value, str) or not isinstance(value, (list, tuple, set)):
            raise DataError(f"With MultiCategoryBlock, get_y must return a list of labels; it returned {value!r} for "
                            f"{_shown(item)}. Split a string of labels, e.g. get_y=lambda r: r['labels'].split(' ').")
        return tuple(sorted({str(name) for name in value if str(name)}))

    def _path(self, item: Any) -> Path:
        value = self.get_x(item) if self.get_x is not None else item
        if not isinstance(value, (str, Path)):
            raise DataError(f"An item must lead to an image path; got {_shown(value)}. Pass get_x, a function from an "
                            "item to its file, e.g. get_x=lambda r: path/'train'/r['fname'] for a DataFrame row.")
        return Path(value)

    def _items(self, source: Any) -> tuple[Any, list[tuple[Path, Label]]]:
        found = self.get_items(source) if self.get_items is not None else source
        # A DataFrame's items are its rows; the splitter gets the DataFrame itself, as in fastai.
        raw = [found.iloc[index] for index in range(len(found))] if _is_dataframe(found) else list(found)
        if not raw:
            found_by = f"get_items={_describe(self.get_items)}" if self.get_items else "the source list"
            raise DataError(f"No items: {found_by} found nothing in {source}. Expected image files, e.g. "
                            "path/<class>/<image>.jpg, with get_items=get_image_files.")
        paths = [self._path(item) for item in raw]
        pairs = [(file, self._label(item, file)) for item, file in zip(raw, paths, strict=True)]
        return found if _is_dataframe(found) else raw, pairs

    def _split(self, source: Any) -> tuple[list[tuple[Path, Label]], list[tuple[Path, Label]], SkippedFiles]:
        found, pairs = self._items(source)
        train, valid = self.splitter(found)
        indices = [int(index) for index in (*train, *valid)]
        if any(not 0 <= index < len(pairs) for index in indices) or len(set(indices)) != len(indices):
            raise DataError(f"The splitter {_describe(self.splitter)} returned indices that are out of range or "
                            f"in both sets for {len(pairs)} items. Expected (train indices, valid indices), disjoint.")
        # Unreadable files are dropped here with one warning, as the factories do.
        skipped = SkippedFiles()
        return ([pairs[int(i)] for i in train if check_file(pairs[int(i)][0], skipped)],
                [pairs[int(i)] for i in valid if check_file(pairs[int(i)][0], skipped)], skipped)

    def dataloaders(self, source: Any, path: str | Path = ".", bs: int = 64, *, seed: int | None = None,
                    cache_bytes: int | None = None, num_workers: int | None = None,
                    device: str | torch.device | None = None, val_bs: int | None = None,
                    shuffle: bool = True) -> ImageDataLoaders:
        """Find, label and split the items of `source`, and build `ImageDataLoaders` (bs images a batch;
        fastai's `val_bs` for the validation batches, `shuffle=False` for training batches in order).

        `path` becomes `dls.path`, where a learner saves `models/` and its export: the current
        folder by default, as in fastai (the factories use the data folder). `seed` orders and
        augments the batches; default: the splitter's seed, else a fresh one.

        Example:
            >>> dls = block.dataloaders("data", bs=32)  # doctest: +SKIP
        """
        train, valid, skipped = self._split(source)
        if seed is None:
            seed = getattr(self.splitter, "seed", None)
        described = Path(source) if isinstance(source, (str, Path)) else Path(path)  # named in error messages
        return ImageDataLoaders._build(  # the builder behind every factory, so the result is the same kind
            train, valid, described, seed=new_seed() if seed is None else seed, size=None, bs=bs, item_size=None,
            resize_method=None, augment=None, cache_bytes=cache_bytes, num_workers=num_workers, device=device,
            skipped=skipped, empty_classes=[], item_tfms=self.item_tfms, batch_tfms=self.batch_tfms,
            task=self.task, path=Path(path), outputs=self._outputs(train + valid),
            labeller=self._labeller() if self.get_x is None else None, val_bs=val_bs, shuffle=shuffle)

    def _outputs(self, pairs: list[tuple[Path, Label]]) -> list[str] | None:
        """A regression's output names (x0, y0, ... for points; value, or value0, value1, ...), else None."""
        if not isinstance(self.task, Regression) or not pairs:
            return None
        n_values = len(pairs[0][1])
        return point_names(n_values // 2) if self.task.points else output_names(None, n_values)

    def _labeller(self) -> Callable[[Path], Label]:
        """A file's label by get_y, for `dls.test_dl(files, with_labels=True)` (items that are files)."""
        return lambda file: self._label(file, Path(file))

    def summary(self, source: Any, bs: int = 4, show_batch: bool = False, **kwargs: Any) -> None:
        """Print what `dataloaders(source)` would build: items, split, classes, a sample, transforms.

        `bs` is the batch size the summary reports (fastai's `summary(path, bs=...)`); with `show_batch`
        it also shows a batch as `dls.show_batch()` does. Other keywords go to `dataloaders`.

        Example:
            >>> block.summary("data")  # doctest: +SKIP
            DataBlock summary
              items: 30 from get_image_files(data)
            ...
        """
        train, valid, skipped = self._split(source)
        classes = sorted({name for _, label in train + valid for name in classes_of(label)})
        settings = resolve_pipeline(self.item_tfms, self.batch_tfms, size=None, item_size=None,
                                    resize_method=None, augment=None)
        found_by = (f"{_describe(self.get_items)}({source})" if self.get_items
                    else "the DataFrame's rows" if _is_dataframe(source) else "the source list")
        sample = (train or valid or [(Path("-"), "-")])[0]
        shown = ", ".join(classes[:20]) + (f", ... ({len(classes) - 20} more)" if len(classes) > 20 else "")
        lines = [
            "DataBlock summary",
            f"  items: {len(train) + len(valid) + len(skipped)} from {found_by}"
            + (f" ({len(skipped)} unreadable, left out)" if skipped else ""),
            f"  split: {len(train)} train, {len(valid)} valid by {_describe(self.splitter)}",
            f"  classes ({len(classes)}): {shown}",
            f"  sample: {sample[0]} -> {sample[1]!r} by get_y={', '.join(_describe(g) for g in self.get_y)}",
            f"  item_tfms: {self.item_tfms!r}",
            f"  batch_tfms: {self.batch_tfms!r}",
            f"  pipeline: item resize to {settings.item_size or settings.size} px ({settings.resize_method}), "
            f"batches of {bs} images of {settings.size} px, augmentation: {settings.augment or 'none'}",
        ]
        if isinstance(self.task, Regression):
            lines[3] = f"  targets: {self.task.config()}, {len(sample[1])} number(s) per image"
        print("\n".join(lines))
        if show_batch:
            self.dataloaders(source, bs=bs, **kwargs).show_batch(max_n=bs)
