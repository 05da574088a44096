"""ImageDataLoaders: a dataset's training and validation loaders, built from a folder, names or a CSV."""

from __future__ import annotations

import io
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from unfreeze.data.cache import default_cache_bytes
from unfreeze.data.decode import BadFileReport, ImageSource, open_rgb
from unfreeze.data.fastai_factories import FastaiFactories, labels_and_task
from unfreeze.data.loaders import ImageDataLoader, ImageDataset, _check_batch_size
from unfreeze.data.regression import output_names, warn_constant_outputs
from unfreeze.data.sources import (
    DataError,
    DataWarning,
    check_root,
    csv_items,
    folder_items,
    name_func_items,
    name_re_items,
    table_items,
    warn_empty_classes,
)
from unfreeze.data.spellings import resolve_pipeline
from unfreeze.data.split import check_classes, new_seed, split_by_mask, split_items
from unfreeze.data.transforms import MAX_SIZE, RESIZE_METHODS, BatchAugment
from unfreeze.fastai_names import fastai_attribute_error
from unfreeze.tasks import MultiLabel, Regression, SingleLabel, Task

# item_tfms / batch_tfms: fastai's Resize, RandomResizedCrop, aug_transforms (see unfreeze.data.spellings).
Transforms = Any

__all__ = ["ImageDataLoaders"]


def _cell(value: Any) -> str:
    # A DataFrame's empty cell is NaN (or None): no text, as an empty CSV cell is.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _check_size(value: object, keyword: str) -> None:
    # `size or 224` would turn 0 into the default; 16.5 fails in every worker's resize (no image at all);
    # bool is an int subclass. A square side only: a (height, width) pair is fastai's Resize, not this.
    # Too large a side is left to `_build`'s check, which also compares size with item_size.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:  # numpy ints are fine
        raise ValueError(f"{keyword} must be a whole number of pixels from 1 to {MAX_SIZE}, got {value!r}. "
                         f"Pass e.g. {keyword}=224")


def _image_from_bytes(data: bytes | bytearray, index: int) -> Any:
    """An encoded image file's bytes (an upload, `open(f, "rb").read()`) as the RGB image they hold."""
    try:
        return open_rgb(io.BytesIO(data))  # type: ignore[arg-type]  # PIL opens any binary file object
    except Exception as error:  # PIL raises several kinds for bytes that are no image
        raise DataError(f"Test item {index} is {len(data)} bytes that are not an image file ({error}). Expected the "
                        "bytes of a .jpg, .png, ... file, a path, or a PIL image.") from None


class ImageDataLoaders(FastaiFactories):
    """The training and validation loaders of one dataset, with its vocab, size and seed.

    Build one with `from_folder`, `from_name_re`, `from_name_func`, `from_csv` or `from_df`.

    Example:
        >>> from unfreeze.data import ImageDataLoaders, sample_path
        >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)
        >>> dls.show_batch(path="batch.png")
        PosixPath('batch.png')
    """

    def __init__(self, train: ImageDataLoader, valid: ImageDataLoader, seed: int,
                 path: str | Path | None = None, labeller: Callable[[Path], Any] | None = None) -> None:
        self.train, self.valid, self.seed = train, valid, seed
        self.vocab = train.dataset.vocab
        # The folder the data came from (None for in-memory or exported loaders): a learner saves its
        # models/ there by default, as fastai's `learn.path` does.
        self.path = None if path is None else Path(path)
        # file -> label, as the factory labelled its items (None where labels came from a table):
        # `test_dl(files, with_labels=True)` labels new files the same way.
        self.labeller = labeller

    def __getattr__(self, name: str) -> Any:
        # fastai's attributes of its DataLoaders (dls.cuda(), dls.loaders, ...) name unfreeze's spelling.
        raise fastai_attribute_error(self, name)

    @property
    def task(self) -> Task:
        """What a label is (`SingleLabel`, or `MultiLabel` for `from_csv(label_delim=...)`)."""
        return self.train.dataset.task

    @property
    def n_classes(self) -> int:
        return len(self.vocab)

    @property
    def c(self) -> int:
        """fastai's name for the number of classes (`n_classes`); for regression, the number of outputs."""
        return self.n_classes

    @property
    def loss_func(self) -> Any:
        """The task's default loss (fastai's `dls.loss_func`): cross-entropy, BCE or `MSELossFlat`."""
        return self.task.loss()

    @property
    def bs(self) -> int:
        """The training batch size (fastai's `dls.bs`)."""
        return self.train.batch_size

    @property
    def train_ds(self) -> ImageDataset:
        """The training dataset (fastai's name for `train.dataset`)."""
        return self.train.dataset

    @property
    def valid_ds(self) -> ImageDataset:
        """The validation dataset (fastai's name for `valid.dataset`)."""
        return self.valid.dataset

    def one_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first training batch of the current epoch, `(images, targets)`, as training sees it.

        Example:
            >>> images, targets = dls.one_batch()  # doctest: +SKIP
            >>> images.shape  # doctest: +SKIP
            torch.Size([64, 3, 224, 224])
        """
        return self.train.one_batch()

    @property
    def size(self) -> int:
        return self.train.size

    @property
    def device(self) -> torch.device:
        return self.train.device

    def balance_classes(self) -> ImageDataLoaders:
        """Sample training items so that every class is drawn about equally often (with replacement).

        The alternative against imbalance is a weighted loss (`vision_learner(class_weights="auto")`).

        Example:
            >>> dls = ImageDataLoaders.from_folder("defects", valid_pct=0.2).balance_classes()  # doctest: +SKIP
        """
        self.train.set_sample_weights(self.task.item_weights(self.train.dataset.targets))
        return self

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
            >>> dls = ImageDataLoaders.from_folder("data/fashion", size=112, device="cuda").preload()  # doctest: +SKIP
        """
        self.train.preload()
        self.valid.preload()
        return self

    def test_dl(self, items: Sequence[ImageSource], batch_size: int | None = None,
                labels: Sequence[Any] | None = None, *, with_labels: bool = False,
                bs: int | None = None) -> ImageDataLoader:
        """A loader over new images (paths, PIL images, HWC arrays, CHW/HWC tensors) with the validation
        transforms. Undecodable files are left out with one warning; `dataset.dropped` lists their
        indices so predictions can be matched to inputs.

        Args:
            items: The images.
            batch_size: Default: the validation loader's.
            labels: One label per image (a class name, a tuple of class names for multi-label data, or
                the numbers for regression) to score the images against (`unfreeze evaluate`); None
                leaves them unlabelled.
            with_labels: fastai's spelling: label the files the way these loaders labelled theirs
                (their folder, regex or function); loaders built from a table need `labels=` instead.
            bs: fastai's spelling of `batch_size`.

        Raises:
            DataError: A path does not exist, the labels do not match the items, or a label names a
                class the model does not know.

        Example:
            >>> loader = dls.test_dl(["new/cat.jpg", "new/dog.jpg"])  # doctest: +SKIP
            >>> scored = dls.test_dl(["new/cat.jpg"], labels=["cat"])  # doctest: +SKIP
        """
        sources = [_image_from_bytes(source, index) if isinstance(source, (bytes, bytearray)) else source
                   for index, source in enumerate(items)]
        batch_size = batch_size or bs
        if with_labels and labels is None:
            if self.labeller is None and not self.train.dataset.items:  # an export's loaders hold no data
                raise DataError("test_dl(with_labels=True): a model loaded with load_learner keeps its classes and "
                                "preprocessing, not the rule that labelled its files; pass labels=[...], one per "
                                "file, e.g. labels=[Path(f).parent.name for f in files].")
            if self.labeller is None:
                raise DataError("test_dl(with_labels=True): these loaders took their labels from a table or lists, "
                                "so new files cannot be labelled the same way; pass labels=[...], one per file.")
            labels = [self.labeller(Path(source)) for source in sources]
        # A broken link is there but unreadable, like a corrupt file: it is left out with the warning that names
        # undecodable files (predict gives it an error row); a path that is not there at all is a typo to fix.
        missing = [str(source) for source in sources if isinstance(source, (str, Path)) and not Path(source).exists()
                   and not Path(source).is_symlink()]
        if missing:
            raise DataError(f"{len(missing)} test image path(s) do not exist: {', '.join(missing[:10])}")
        paths = [Path(source) if isinstance(source, (str, Path)) else Path(f"<in-memory image {index}>")
                 for index, source in enumerate(sources)]
        if labels is None:
            # Unlabelled: "" is no class for a single-label task, None a row of NaN targets for multi-label.
            labels = ["" if isinstance(self.task, SingleLabel) else None] * len(paths)
        else:
            labels = list(labels)
            if len(labels) != len(paths):
                raise DataError(f"Got {len(labels)} labels for {len(paths)} images; pass one label per image.")
            unknown = sorted({name for label in labels for name in self.task.classes_of(label)} - set(self.vocab))
            if unknown:
                raise DataError(f"The labels name {len(unknown)} class(es) the model does not know: "
                                f"{', '.join(unknown[:10])}. The model knows {', '.join(self.vocab[:20])}"
                                f"{', ...' if len(self.vocab) > 20 else ''}. Remove or rename the images (or class "
                                "folders) of those classes, or label them with the model's classes.")
        reference = self.valid.dataset
        dataset = ImageDataset(list(zip(paths, labels, strict=True)), self.vocab,
                               sources=[Path(s) if isinstance(s, str) else s for s in sources],
                               item_size=reference.item_size, resize_method=reference.resize_method,
                               cache_bytes=reference.cache.max_bytes, task=self.task)
        return ImageDataLoader(dataset, batch_size or self.valid.batch_size, size=self.size, seed=self.seed,
                               device=self.device, num_workers=self.valid.num_workers,
                               mean=self.valid.mean, std=self.valid.std)

    def show_batch(self, path: str | Path | None = None, max_n: int = 9, *, nrows: int | None = None,
                   ncols: int | None = None, figsize: tuple[float, float] | None = None,
                   unique: bool = False) -> Any:
        """Up to `max_n` training images, augmented, with their labels (`self.train.show_batch`).

        `path` None shows the grid inline in a notebook (and returns the figure), or in a script saves
        batch.png and prints where; with a path, saves there and returns it. `unique=True` shows one
        image augmented `max_n` times (fastai's spelling). `dls.valid.show_batch()` shows validation
        images.

        Example:
            >>> dls.show_batch(path="batch.png", max_n=9)  # doctest: +SKIP
            PosixPath('batch.png')
            >>> dls.show_batch(nrows=2, ncols=4, figsize=(8, 4))  # doctest: +SKIP
        """
        return self.train.show_batch(path, max_n, nrows=nrows, ncols=ncols, figsize=figsize, unique=unique)

    def __repr__(self) -> str:
        n = self.n_classes  # a regression's vocab names its outputs (numbers), not classes
        what = (f"{n} output{'s' * (n != 1)}" if isinstance(self.task, Regression) else f"{n} class{'es' * (n != 1)}")
        return (f"ImageDataLoaders({len(self.train.dataset)} train, {len(self.valid.dataset)} valid, {what}, "
                f"size {self.size}, seed {self.seed})")

    @classmethod
    def _build(cls, train_items: list[tuple[Path, str]], valid_items: list[tuple[Path, str]], source: Path, *,
               seed: int, size: int | None, bs: int, item_size: int | None, resize_method: str | None,
               augment: bool | BatchAugment | None, cache_bytes: int | None, num_workers: int | None,
               device: str | torch.device | None, skipped: BadFileReport, empty_classes: list[str],
               item_tfms: Transforms = None, batch_tfms: Transforms = None,
               task: Task | None = None, path: Path | None = None, outputs: list[str] | None = None,
               labeller: Callable[[Path], Any] | None = None, val_bs: int | None = None,
               shuffle: bool = True) -> ImageDataLoaders:
        # `source` names the data in messages; `path` (default: source) becomes `dls.path`. `outputs`
        # names a regression's outputs (its vocab); `labeller` labels new files for test_dl. `val_bs`
        # (default: bs) and `shuffle` are fastai's: shuffle=False trains on the items in order, none dropped.
        for keyword, value in (("size", size), ("item_size", item_size)):
            if value is not None:
                _check_size(value, keyword)
        explicit = item_tfms is not None or resize_method is not None  # the default "crop" was not asked for
        settings = resolve_pipeline(item_tfms, batch_tfms, size=size, item_size=item_size,
                                    resize_method=resize_method, augment=augment)
        size, item_size, resize_method = settings.size, settings.item_size, settings.resize_method
        if isinstance(task, Regression) and task.points and settings.resize_method != "squish" and explicit:
            # A crop or pad would move the points; squishing keeps [-1, 1] coordinates where they are.
            warnings.warn(f"Point targets: images are squished to the square size instead of "
                          f"{settings.resize_method!r}, "
                          "so that the points stay on the image (pass resize_method='squish' to silence this).",
                          DataWarning, stacklevel=3)
        if isinstance(task, Regression) and task.points:
            resize_method = "squish"
        if resize_method not in RESIZE_METHODS:
            raise ValueError(f"resize_method must be one of {RESIZE_METHODS}, got {resize_method!r}")
        _check_batch_size(bs)
        if val_bs is not None:
            _check_batch_size(val_bs)
        item_size = item_size or size
        if not 1 <= size <= item_size <= MAX_SIZE or bs < 1:
            raise ValueError(f"Expected 1 <= size <= item_size <= {MAX_SIZE} pixels and bs >= 1; got size {size}, "
                             f"item_size {item_size}, bs {bs}. Pass a smaller size, such as 224")
        skipped.warn()
        warn_empty_classes(empty_classes)
        task = task if task is not None else SingleLabel()
        if isinstance(task, Regression):
            if not train_items:
                raise DataError(f"No training images found under {source}. Expected image files with a number (or "
                                "numbers) each.")
            vocab = outputs or output_names(None, len(train_items[0][1]))
            warn_constant_outputs(train_items, vocab)
        else:
            vocab = check_classes(train_items, valid_items, source,
                                  min_classes=1 if isinstance(task, MultiLabel) else 2)
        n_total = len(train_items) + len(valid_items)
        cache_bytes = default_cache_bytes() if cache_bytes is None else cache_bytes
        datasets = [ImageDataset(items, vocab, item_size=item_size, resize_method=resize_method,
                                 cache_bytes=cache_bytes * len(items) // n_total, task=task)
                    for items in (train_items, valid_items)]
        common = {"size": size, "seed": seed, "device": device or "cpu", "num_workers": num_workers}
        train = ImageDataLoader(datasets[0], bs, training=True, drop_last=shuffle and len(train_items) > bs,
                                augment=settings.augment, **common)
        train.shuffle = shuffle
        loaders = cls(train, ImageDataLoader(datasets[1], val_bs or bs, **common), seed,
                      path=source if path is None else path, labeller=labeller)
        if settings.normalize is not None:
            loaders.set_normalization(settings.normalize.mean, settings.normalize.std)
        return loaders

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid",
                    valid_pct: float | None = None, seed: int | None = None, size: int | None = None, bs: int = 64, *,
                    item_size: int | None = None, resize_method: str | None = None,
                    augment: bool | BatchAugment | None = None, cache_bytes: int | None = None,
                    num_workers: int | None = None, device: str | torch.device | None = None,
                    item_tfms: Transforms = None, batch_tfms: Transforms = None,
                    val_bs: int | None = None, shuffle: bool = True) -> ImageDataLoaders:
        """Load `path/train/<class>/*` and `path/valid/<class>/*`, or with `valid_pct` split
        `path/<class>/*` (or `path/train/<class>/*` if it exists) at random.

        `size` defaults to 224; `item_size` > `size` enables presizing; `resize_method` is "crop", "pad"
        or "squish"; `augment` is True (unfreeze's default `BatchAugment()`), False or a `BatchAugment`.
        fastai's spellings work too: `item_tfms=Resize(460)`, `batch_tfms=aug_transforms(size=224)`
        (with them, as in fastai, no `batch_tfms` means no augmentation; see `unfreeze.data.spellings`).
        `cache_bytes` bounds the decoded-image cache (default: a quarter of the free memory);
        `num_workers` decodes the first pass; fastai's `val_bs` sizes the validation batches (default
        `bs`) and `shuffle=False` trains on the items in order. The other factories take the same
        keyword-only options.

        Example:
            >>> dls = ImageDataLoaders.from_folder("data/fashion", size=64, bs=32)  # doctest: +SKIP
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
                          num_workers=num_workers, device=device, skipped=skipped, empty_classes=empty_classes,
                          item_tfms=item_tfms, batch_tfms=batch_tfms, labeller=lambda file: Path(file).parent.name,
                          val_bs=val_bs, shuffle=shuffle)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Sequence[str | Path] | None, pat: str,
                     valid_pct: float = 0.2, seed: int | None = None, size: int | None = None, bs: int = 64, *,
                     item_size: int | None = None, resize_method: str | None = None,
                     augment: bool | BatchAugment | None = None, cache_bytes: int | None = None,
                     num_workers: int | None = None, device: str | torch.device | None = None,
                     item_tfms: Transforms = None, batch_tfms: Transforms = None,
                     val_bs: int | None = None, shuffle: bool = True) -> ImageDataLoaders:
        """Label each file by group 1 of regex `pat` searched in its name (None lists `path`).

        Example:
            >>> dls = ImageDataLoaders.from_name_re("pets/images", None, r"^(.+)_\\d+\\.jpg$",  # doctest: +SKIP
            ...                                     size=224)
        """
        skipped, root = BadFileReport(), check_root(path, "a folder of images")
        items = name_re_items(root, fnames, pat, skipped)
        return cls._from_labelled(items, None, root, valid_pct, seed, size, bs, item_size, resize_method, augment,
                                  cache_bytes, num_workers, device, skipped, item_tfms, batch_tfms,
                                  labeller=lambda file: name_re_items(file.parent, [file.name], pat,
                                                                      BadFileReport())[0][1],
                                  val_bs=val_bs, shuffle=shuffle)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Sequence[str | Path] | None,
                       label_func: Callable[[str], str], valid_pct: float = 0.2, seed: int | None = None,
                       size: int | None = None, bs: int = 64, *, item_size: int | None = None,
                       resize_method: str | None = None, augment: bool | BatchAugment | None = None,
                       cache_bytes: int | None = None, num_workers: int | None = None,
                       device: str | torch.device | None = None, item_tfms: Transforms = None,
                       batch_tfms: Transforms = None, val_bs: int | None = None,
                       shuffle: bool = True) -> ImageDataLoaders:
        """Label each file by `label_func(name)`, its file NAME as a str, as fastai does (cats vs dogs:
        `def is_cat(name): return name[0].isupper()`).

        Example:
            >>> dls = ImageDataLoaders.from_name_func("pets", None, lambda name: name.split("_")[0])  # doctest: +SKIP
        """
        skipped, root = BadFileReport(), check_root(path, "a folder of images")
        # fastai passes the file name (a str), not the Path: `def is_cat(x): return x[0].isupper()`.
        items = name_func_items(root, fnames, lambda file: label_func(file.name), skipped)
        return cls._from_labelled(items, None, root, valid_pct, seed, size, bs, item_size, resize_method, augment,
                                  cache_bytes, num_workers, device, skipped, item_tfms, batch_tfms,
                                  labeller=lambda file: str(label_func(file.name)), val_bs=val_bs,
                                  shuffle=shuffle)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str = "labels.csv", fn_col: int | str = 0,
                 label_col: int | str | Sequence[int | str] = 1, valid_col: int | str | None = None,
                 valid_pct: float = 0.2,
                 seed: int | None = None, size: int | None = None, bs: int = 64, *, label_delim: str | None = None,
                 threshold: float = 0.5, folder: str | None = None, suff: str = "", delimiter: str | None = None,
                 item_size: int | None = None, resize_method: str | None = None,
                 augment: bool | BatchAugment | None = None, cache_bytes: int | None = None,
                 num_workers: int | None = None, device: str | torch.device | None = None,
                 item_tfms: Transforms = None, batch_tfms: Transforms = None,
                 y_block: Any = None, val_bs: int | None = None, shuffle: bool = True) -> ImageDataLoaders:
        """Items from `path/csv_fname` (header row; file names relative to `path`, or to `path/folder`,
        with `suff` appended: fastai's `folder='train', suff='.jpg'`); `valid_col` marks validation
        rows (1/true/yes), otherwise `valid_pct` splits at random. `delimiter` separates the cells
        (default: whichever of ',', ';', tab or '|' splits the header row).

        With `label_delim` the data is multi-label: the label cell lists any number of classes
        separated by it ("cat dog" with `label_delim=" "`; an empty cell means no class), and the
        learner trains a `MultiLabel(threshold)` task (sigmoid, binary cross-entropy). With fastai's
        `y_block=RegressionBlock` the label cells are numbers (`label_col` may list several columns:
        one output each), with `y_block=PointBlock` pixel coordinates x, y, ... (scaled to [-1, 1]).

        Example:
            >>> dls = ImageDataLoaders.from_csv("planes", "labels.csv",  # doctest: +SKIP
            ...                                 fn_col="file", label_col="label")
            >>> dls = ImageDataLoaders.from_csv("planet", "train.csv", label_delim=" ")  # multi-label  # doctest: +SKIP
            >>> dls = ImageDataLoaders.from_csv("planet", "train.csv", folder="train-jpg",  # doctest: +SKIP
            ...                                 suff=".jpg", label_delim=" ")
        """
        skipped, root = BadFileReport(), check_root(path, f"a folder holding {csv_fname} and the images")
        items, is_valid = csv_items(root, csv_fname, fn_col, label_col, valid_col, skipped,
                                    empty_is_label=label_delim is not None, folder=folder, suffix=suff,
                                    delimiter=delimiter)
        items, task, outputs = labels_and_task(items, label_delim, threshold, y_block, label_col)
        return cls._from_labelled(items, is_valid, root, valid_pct, seed, size, bs, item_size, resize_method,
                                  augment, cache_bytes, num_workers, device, skipped, item_tfms, batch_tfms, task,
                                  outputs=outputs, val_bs=val_bs, shuffle=shuffle)

    @classmethod
    def from_df(cls, df: Any, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = None,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "",
                label_col: int | str | Sequence[int | str] = 1,
                label_delim: str | None = None, valid_col: int | str | None = None, size: int | None = None,
                bs: int = 64, *, threshold: float = 0.5, item_size: int | None = None,
                resize_method: str | None = None, augment: bool | BatchAugment | None = None,
                cache_bytes: int | None = None, num_workers: int | None = None,
                device: str | torch.device | None = None, item_tfms: Transforms = None,
                batch_tfms: Transforms = None, y_block: Any = None, val_bs: int | None = None,
                shuffle: bool = True) -> ImageDataLoaders:
        """Items from the rows of a pandas DataFrame, as `from_csv` reads a CSV (fastai's `from_df`):
        file `path/folder/<fn_col cell><suff>`, label from `label_col` (a list split by `label_delim`
        for multi-label data), validation rows marked by `valid_col`, else a random `valid_pct`.

        Example:
            >>> df = pd.read_csv("planet/train.csv")  # doctest: +SKIP
            >>> dls = ImageDataLoaders.from_df(df, "planet", folder="train",  # doctest: +SKIP
            ...                                suff=".jpg", label_delim=" ")
        """
        if not (hasattr(df, "columns") and hasattr(df, "itertuples")):
            raise TypeError(f"from_df expects a pandas DataFrame, got {type(df).__name__}. For a CSV file use "
                            "ImageDataLoaders.from_csv(path, 'labels.csv').")
        skipped, root = BadFileReport(), check_root(path, "the folder the DataFrame's file names are relative to")
        header = [str(column) for column in df.columns]
        rows = [[_cell(value) for value in row] for row in df.itertuples(index=False)]
        if not rows:
            raise DataError("The DataFrame has no rows. Expected one row per image, with file and label columns.")
        items, is_valid = table_items(header, rows, root / folder if folder else root, "the DataFrame", fn_col,
                                      label_col, valid_col, skipped, empty_is_label=label_delim is not None,
                                      suffix=suff)
        items, task, outputs = labels_and_task(items, label_delim, threshold, y_block, label_col)
        return cls._from_labelled(items, is_valid, root, valid_pct, seed, size, bs, item_size, resize_method,
                                  augment, cache_bytes, num_workers, device, skipped, item_tfms, batch_tfms, task,
                                  outputs=outputs, val_bs=val_bs, shuffle=shuffle)

    @classmethod
    def _from_labelled(cls, items: list[tuple[Path, str]], is_valid: list[bool] | None, root: Path,
                       valid_pct: float, seed: int | None, size: int | None, bs: int, item_size: int | None,
                       resize_method: str | None, augment: bool | BatchAugment | None, cache_bytes: int | None,
                       num_workers: int | None, device: str | torch.device | None, skipped: BadFileReport,
                       item_tfms: Transforms, batch_tfms: Transforms,
                       task: Task | None = None, *, outputs: list[str] | None = None,
                       labeller: Callable[[Path], Any] | None = None, val_bs: int | None = None,
                       shuffle: bool = True) -> ImageDataLoaders:
        seed = new_seed() if seed is None else seed
        train_items, valid_items = (split_by_mask(items, is_valid) if is_valid is not None
                                    else split_items(items, valid_pct, seed))
        return cls._build(train_items, valid_items, root, seed=seed, size=size, bs=bs, item_size=item_size,
                          resize_method=resize_method, augment=augment, cache_bytes=cache_bytes,
                          num_workers=num_workers, device=device, skipped=skipped, empty_classes=[],
                          item_tfms=item_tfms, batch_tfms=batch_tfms, task=task, outputs=outputs, labeller=labeller,
                          val_bs=val_bs, shuffle=shuffle)
