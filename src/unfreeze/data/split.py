"""Seeded train/validation splits that leave every global RNG alone.

A split is a function of (number of items, valid_pct, seed) only, and the same one fastai 2.8's
`RandomSplitter(valid_pct, seed)` picks: a `torch.randperm(n)` under that seed, whose first
`int(valid_pct * n)` indices are the validation set. The permutation comes from a private generator
seeded explicitly (the same stream as `torch.manual_seed(seed)`), so no global RNG moves.
"""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unfreeze.data.sources import _MAX_NAMED, DataError, DataWarning

__all__ = ["check_classes", "classes_of", "fastai_permutation_split", "new_seed", "random_split", "split_by_mask",
           "split_items", "warn_spelling_variants"]

Item = tuple[Path, Any]  # (path, class name), or (path, tuple of class names) for multi-label data


def classes_of(label: Any) -> tuple[str, ...]:
    """The class names an item's label holds: one, several (multi-label), or none."""
    if isinstance(label, str):
        return (label,) if label else ()
    # Regression labels are numbers: they name no class.
    return tuple(name for name in label if isinstance(name, str)) if label is not None else ()


def new_seed() -> int:
    """A fresh 31-bit seed from the OS entropy pool; it does not touch any global RNG state."""
    return secrets.randbits(31)


def fastai_permutation_split(n_items: int, valid_pct: float, seed: int) -> tuple[list[int], list[int]]:
    """fastai's RandomSplitter: (train, valid) indices in the order of `torch.randperm(n_items)` under `seed`.

    The first `int(valid_pct * n_items)` indices of the permutation are the validation set.

    Example:
        >>> fastai_permutation_split(10, 0.2, seed=42)
        ([1, 8, 4, 5, 0, 9, 3, 7], [2, 6])
    """
    if not 0.0 <= valid_pct < 1.0:
        raise DataError(f"valid_pct must be in [0, 1), got {valid_pct}. Expected a fraction such as 0.2.")
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(valid_pct * n_items)
    return order[cut:], order[:cut]


def random_split(n_items: int, valid_pct: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices 0..n_items-1 at random into (train, valid), each sorted: fastai's split for the seed.

    `int(valid_pct * n_items)` indices go to validation (`fastai_permutation_split`).

    Example:
        >>> train, valid = random_split(10, 0.2, seed=42)
        >>> len(train), len(valid)
        (8, 2)
    """
    train, valid = fastai_permutation_split(n_items, valid_pct, seed)
    return sorted(train), sorted(valid)


def split_items(items: Sequence[Item], valid_pct: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Random split of (path, label) items; a class never ends up with all its images in validation.

    A class whose images all fell into validation gets its first one back in training, so a class
    with a single image is always trained on (and then reported as having no validation image).

    Example:
        >>> train, valid = split_items([(Path("a.png"), "cat"), (Path("b.png"), "dog")], 0.5, seed=0)
    """
    train_indices, valid_indices = random_split(len(items), valid_pct, seed)
    train_labels = {name for index in train_indices for name in classes_of(items[index][1])}
    for index in list(valid_indices):
        names = set(classes_of(items[index][1]))
        if names - train_labels:
            train_labels |= names
            valid_indices.remove(index)
            train_indices.append(index)
    return [items[index] for index in sorted(train_indices)], [items[index] for index in valid_indices]


def split_by_mask(items: Sequence[Item], is_valid: Sequence[bool]) -> tuple[list[Item], list[Item]]:
    """Split items by a per-item flag (a CSV is-valid column)."""
    train = [item for item, valid in zip(items, is_valid, strict=True) if not valid]
    valid = [item for item, valid in zip(items, is_valid, strict=True) if valid]
    return train, valid


def _spelling_key(name: str) -> str:
    """A class name without case and with runs of spaces, '_' and '-' as one space: 'Golden_Retriever' and
    'golden retriever' share a key."""
    return re.sub(r"[\s_-]+", " ", name.casefold()).strip()


def warn_spelling_variants(*item_lists: Sequence[Item]) -> None:
    """One DataWarning naming the classes that differ only in case or separators ('Cat' and 'cat',
    'golden_retriever' and 'golden retriever'), with their image counts; they stay separate classes.

    Two folders or labels spelled so are nearly always one class typed twice, which would split its images
    and teach the model to tell the halves apart; but only the user can say, so the labels are kept as written.

    Example:
        >>> warn_spelling_variants([(Path("a.png"), "Cat"), (Path("b.png"), "cat")])  # doctest: +SKIP
    """
    counts: dict[str, int] = {}
    for items in item_lists:
        for _, label in items:
            for name in classes_of(label):
                counts[name] = counts.get(name, 0) + 1
    groups: dict[str, list[str]] = {}
    for name in sorted(counts):
        groups.setdefault(_spelling_key(name), []).append(name)
    variants = [names for names in groups.values() if len(names) > 1]
    if not variants:
        return
    described = ["; ".join(" and ".join(f"{name!r} ({counts[name]})" for name in names) for names in variants[:5])]
    more = f"; and {len(variants) - 5} more" if len(variants) > 5 else ""
    warnings.warn(f"{len(variants)} group(s) of classes differ only in case or separators, and train as separate "
                  f"classes (images per class): {described[0]}{more}. If a group is one class, rename its folders "
                  "or labels to one spelling; if they are different classes, nothing needs doing.",
                  DataWarning, stacklevel=4)


def check_classes(train_items: Sequence[Item], valid_items: Sequence[Item], source: Path,
                  min_classes: int = 2) -> list[str]:
    """Return the sorted vocab; raise DataError if the data cannot train, warn about thin classes.

    `min_classes` is 2 for single-label data; multi-label data can learn a single class (present or not).
    """
    train_classes = {name for _, label in train_items for name in classes_of(label)}
    valid_classes = {name for _, label in valid_items for name in classes_of(label)}
    if not train_items:
        raise DataError(
            f"No training images found under {source}. Expected image files (jpg, png, webp, bmp, gif, "
            "tif) in one folder per class, e.g. train/cat/1.jpg and train/dog/2.jpg."
        )
    if not train_classes:  # multi-label cells that are all empty ("none of the classes"): no class to learn
        raise DataError(
            f"Found {len(train_items)} training images under {source}, but no training image has a class: every "
            f"label is empty. Expected at least {min_classes} class(es) among them: check the label column and the "
            "label delimiter (--label-delim)."
        )
    if len(train_classes) < min_classes:
        raise DataError(
            f"Found {len(train_classes)} class ({', '.join(sorted(train_classes))}) under {source}. "
            f"Expected at least {min_classes} classes, each with at least one image."
        )
    counts: dict[str, int] = {}
    for _, label in train_items:
        for name in classes_of(label):
            counts[name] = counts.get(name, 0) + 1
    without_valid = sorted(train_classes - valid_classes)
    if without_valid:
        described = [f"{label} ({counts[label]} image{'s' if counts[label] > 1 else ''})"
                     for label in without_valid[:_MAX_NAMED]]
        warnings.warn(
            f"{len(without_valid)} class(es) have no validation image, so their error cannot be measured: "
            + _named_then_counted(described, len(without_valid)),
            DataWarning,
            stacklevel=3,
        )
    warn_spelling_variants(train_items, valid_items)
    only_valid = sorted(valid_classes - train_classes)
    if only_valid:
        warnings.warn(
            f"{len(only_valid)} class(es) have validation images but no training image: "
            + _named_then_counted(only_valid[:_MAX_NAMED], len(only_valid)),
            DataWarning,
            stacklevel=3,
        )
    return sorted(train_classes | valid_classes)


def _named_then_counted(names: Sequence[str], total: int) -> str:
    """The first names of a list of `total`, then the count of the rest: a warning stays a few lines long."""
    more = total - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
