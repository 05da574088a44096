"""Files to batches: find (path, label) items, split them, decode once, batch and augment on the device.

Example:
    >>> from unfreeze.data import ImageDataLoaders, sample_path
    >>> dls = ImageDataLoaders.from_folder(sample_path(), size=64)
    >>> dls.show_batch(path="batch.png")
    PosixPath('batch.png')
"""

from unfreeze.data.augment import AUGMENT_PRESETS, PolicyAugment, augment_preset
from unfreeze.data.datablock import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    FuncSplitter,
    GrandparentSplitter,
    ImageBlock,
    IndexSplitter,
    MultiCategoryBlock,
    PILImage,
    PILImageBW,
    PointBlock,
    RandomSplitter,
    RegexLabeller,
    RegressionBlock,
    get_image_files,
    parent_label,
    using_attr,
    verify_images,
)
from unfreeze.data.dataloaders import ImageDataLoaders
from unfreeze.data.datasets import Categorize, Datasets, IntToFloatTensor, TfmdLists, ToTensor
from unfreeze.data.decode import BadFileReport, decode_image, open_rgb, to_rgb
from unfreeze.data.loaders import ImageDataLoader, ImageDataset
from unfreeze.data.sources import IMAGE_EXTENSIONS, DataError, DataWarning, read_idx, sample_path
from unfreeze.data.spellings import (
    Normalize,
    PadMode,
    RandomResizedCrop,
    Resize,
    ResizeMethod,
    UnsupportedTransformWarning,
    aug_transforms,
    imagenet_stats,
)
from unfreeze.data.split import random_split
from unfreeze.data.transforms import MAX_SIZE, RESIZE_METHODS, BatchAugment
from unfreeze.data.untar import URLs, untar_data

__all__ = [
    "AUGMENT_PRESETS",
    "IMAGE_EXTENSIONS",
    "MAX_SIZE",
    "RESIZE_METHODS",
    "BadFileReport",
    "BatchAugment",
    "Categorize",
    "CategoryBlock",
    "ColReader",
    "ColSplitter",
    "DataBlock",
    "DataError",
    "DataWarning",
    "Datasets",
    "FuncSplitter",
    "GrandparentSplitter",
    "ImageBlock",
    "ImageDataLoader",
    "ImageDataLoaders",
    "ImageDataset",
    "IndexSplitter",
    "IntToFloatTensor",
    "MultiCategoryBlock",
    "Normalize",
    "PILImage",
    "PILImageBW",
    "PadMode",
    "PointBlock",
    "PolicyAugment",
    "RandomResizedCrop",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "Resize",
    "ResizeMethod",
    "TfmdLists",
    "ToTensor",
    "URLs",
    "UnsupportedTransformWarning",
    "aug_transforms",
    "augment_preset",
    "decode_image",
    "get_image_files",
    "imagenet_stats",
    "open_rgb",
    "parent_label",
    "random_split",
    "read_idx",
    "sample_path",
    "to_rgb",
    "untar_data",
    "using_attr",
    "verify_images",
]
