"""fastai's factories that unfreeze's own do not spell: `from_path_func`, `from_path_re`, `from_lists`,
and the `y_block=` of `from_csv` / `from_df` (`labels_and_task`), mixed into `ImageDataLoaders`.

Each ends in `ImageDataLoaders._from_labelled`, the path every labelled factory takes, so the result
is the same kind of loaders; fastai's `**kwargs` are the factories' keyword options, checked by name.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unfreeze.data.blocks import block_task
from unfreeze.data.decode import BadFileReport
from unfreeze.data.regression import numbers_from, output_names, points_from
from unfreeze.data.sources import DataError, DataWarning, check_root, name_func_items
from unfreeze.tasks import Label, MultiLabel, Regression, SingleLabel, Task, point_names

__all__ = ["FastaiFactories", "labels_and_task"]

# What a number label looks like (float() alone would also take '1_0' and ' 1').
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _one_class_per_number(items: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """Labels that spell one number differently ('1', '1.0', '01': a column saved by two tools, or pandas'
    floats) as one class, spelled as most of its rows spell it; one DataWarning names each merge."""
    spellings: dict[float, Counter[str]] = {}
    for _, label in items:
        if isinstance(label, str) and _NUMBER.fullmatch(label):
            spellings.setdefault(float(label), Counter())[label] += 1
    merged = {spelling: counts.most_common(1)[0][0]
              for counts in spellings.values() if len(counts) > 1 for spelling in counts}
    if not merged:
        return items
    groups = [f"{' and '.join(map(repr, sorted(counts)))} are the same number, class {counts.most_common(1)[0][0]!r}"
              for counts in spellings.values() if len(counts) > 1]
    warnings.warn(f"Labels that are the same number are one class, named as most of its rows write it: "
                  f"{'; '.join(groups)}. Write each class one way in the label column if they are meant to be "
                  "different classes.", DataWarning, stacklevel=4)
    return [(file, merged.get(label, label)) for file, label in items]


def labels_and_task(items: list[tuple[Path, Any]], label_delim: str | None, threshold: float, y_block: Any = None,
                     label_col: Any = 1) -> tuple[list[tuple[Path, Label]], Task, list[str] | None]:
    """Single-label items as they are, with `label_delim` each cell split into a tuple of classes, or with
    fastai's `y_block=RegressionBlock` / `PointBlock` the cells as numbers (then also the output names)."""
    task = None if y_block is None else block_task(y_block)
    if isinstance(task, Regression):
        if task.points:
            numbers = [(file, points_from(label, file, file)) for file, label in items]
        else:
            numbers = [(file, numbers_from(label, file)) for file, label in items]
        n_values = len(numbers[0][1]) if numbers else 1
        return numbers, task, point_names(n_values // 2) if task.points else output_names(label_col, n_values)
    if isinstance(task, MultiLabel) and label_delim is None:
        label_delim = " "
    if label_delim is None:
        return _one_class_per_number(list(items)), SingleLabel(), None
    if not isinstance(label_delim, str) or not label_delim:
        raise DataError(f"label_delim must be a non-empty string such as ' ' or ';', got {label_delim!r}.")
    _warn_other_separator([str(label) for _, label in items], label_delim)
    return [(file, tuple(sorted({name.strip() for name in str(label).split(label_delim) if name.strip()})))
            for file, label in items], MultiLabel(threshold), None


def _warn_other_separator(cells: list[str], label_delim: str) -> None:
    """One DataWarning when no multi-label cell holds `label_delim` but classes hold another separator: 'cat;dog'
    split at ' ' (the CLI's default) would train a class 'cat;dog'."""
    if any(label_delim in cell for cell in cells):
        return
    for separator in (",", ";", "|", " "):
        holding = sorted({cell.strip() for cell in cells if separator in cell.strip() and separator != label_delim})
        if holding:
            examples = ", ".join(map(repr, holding[:3]))
            warnings.warn(f"The multi-label cells are split at {label_delim!r}, which none of them holds, while "
                          f"{len(holding)} of the classes hold {separator!r}, for example {examples}. "
                          f"If {separator!r} separates the classes, pass label_delim={separator!r} (--label-delim "
                          f"'{separator}'); otherwise each cell is one class.", DataWarning, stacklevel=4)
            return


class FastaiFactories:
    """fastai's extra `ImageDataLoaders` factories (classmethods); the loaders class supplies `_from_labelled`."""

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Sequence[str | Path] | None, label_func: Callable[[Path], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **options: Any) -> Any:  # an ImageDataLoaders
        """fastai's `from_path_func`: label each file by `label_func(path)`, its whole Path (`from_name_func`
        passes the name). `options` are `from_name_func`'s keywords (size, bs, item_tfms, ...).

        Example:
            >>> dls = ImageDataLoaders.from_path_func("pets", files, lambda p: p.parent.name)  # doctest: +SKIP
        """
        return cls._from_function(path, fnames, label_func, valid_pct, seed, options)

    @classmethod
    def from_path_re(cls, path: str | Path, fnames: Sequence[str | Path] | None, pat: str, valid_pct: float = 0.2,
                     seed: int | None = None, **options: Any) -> Any:  # an ImageDataLoaders
        """fastai's `from_path_re`: label each file by group 1 of `pat` searched in its whole path.

        Example:
            >>> dls = ImageDataLoaders.from_path_re("data", files, r"/([^/]+)/[^/]+$")  # doctest: +SKIP
        """
        regex = re.compile(pat)

        def label(file: Path) -> str:
            found = regex.search(str(file))
            if found is None or not found.groups():
                raise DataError(f"from_path_re: the pattern {pat!r} does not match {str(file)!r}. Expected group 1 "
                                "to capture the label from the file's path.")
            return found.group(1)

        return cls._from_function(path, fnames, label, valid_pct, seed, options)

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Sequence[str | Path], labels: Sequence[Any], valid_pct: float = 0.2,
                   seed: int | None = None, y_block: Any = None, **options: Any) -> Any:  # an ImageDataLoaders
        """fastai's `from_lists`: files (relative to `path`, or absolute) and one label each; with
        `y_block=RegressionBlock` the labels are numbers, with `MultiCategoryBlock` lists of classes.

        Example:
            >>> dls = ImageDataLoaders.from_lists("data", ["a.jpg", "b.jpg"], ["cat", "dog"])  # doctest: +SKIP
        """
        root = check_root(path, "the folder the file names are relative to")
        files, labels = [root / name for name in fnames], list(labels)
        if len(files) != len(labels):
            raise DataError(f"from_lists: {len(files)} files but {len(labels)} labels; pass one label per file.")
        missing = [str(file) for file in files if not file.exists()]
        if missing:
            raise DataError(f"from_lists: {len(missing)} file(s) do not exist, e.g. {', '.join(missing[:3])}.")
        task = None if y_block is None else block_task(y_block)
        if isinstance(task, MultiLabel):
            items: list[tuple[Path, Any]] = [(file, tuple(sorted({str(n) for n in label})))
                                              for file, label in zip(files, labels, strict=True)]
            return cls._from_options(items, None, root, valid_pct, seed, options, task, None)
        pairs = [(file, label if task else str(label)) for file, label in zip(files, labels, strict=True)]
        items, task, outputs = labels_and_task(pairs, None, 0.5, y_block)
        return cls._from_options(items, None, root, valid_pct, seed, options, task, outputs)

    @classmethod
    def _from_function(cls, path: str | Path, fnames: Sequence[str | Path] | None, label: Callable[[Path], Any],
                       valid_pct: float, seed: int | None, options: dict[str, Any]) -> Any:  # an ImageDataLoaders
        skipped, root = BadFileReport(), check_root(path, "a folder of images")
        items = name_func_items(root, fnames, label, skipped)
        return cls._from_options(items, None, root, valid_pct, seed, {**options, "skipped": skipped}, None, None,
                                 labeller=lambda file: str(label(file)))

    @classmethod
    def _from_options(cls, items: list[tuple[Path, Any]], is_valid: list[bool] | None, root: Path, valid_pct: float,
                      seed: int | None, options: dict[str, Any], task: Task | None, outputs: list[str] | None,
                      labeller: Callable[[Path], Any] | None = None) -> Any:  # an ImageDataLoaders
        """`_from_labelled` with the factories' keyword options given as a dict (fastai's **kwargs)."""
        known = ("size", "bs", "item_size", "resize_method", "augment", "cache_bytes", "num_workers", "device",
                 "item_tfms", "batch_tfms", "val_bs", "shuffle", "skipped")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"Unknown option(s) {', '.join(unknown)}; the factories take {', '.join(known[:-1])}.")
        get = options.get
        return cls._from_labelled(  # type: ignore[attr-defined]  # ImageDataLoaders's
            items, is_valid, root, valid_pct, seed, get("size"), get("bs", 64), get("item_size"), get("resize_method"),
            get("augment"), get("cache_bytes"), get("num_workers"), get("device"), get("skipped") or BadFileReport(),
            get("item_tfms"), get("batch_tfms"), task, outputs=outputs, labeller=labeller,
            val_bs=get("val_bs"), shuffle=get("shuffle", True))


