"""fastai's `untar_data(URLs.PETS)`: a dataset from a local folder, a local archive or fastai's data cache.

unfreeze works offline and never downloads a dataset. `untar_data` finds the data where fastai keeps
it, so a machine that once ran fastai needs nothing more:

1. `url` is a local folder: that folder; a local archive (.tgz, .tar.gz, .tar, .zip): extracted;
2. `<data>/<name>` (default `$FASTAI_HOME/data`, `FASTAI_HOME` defaulting to `~/.fastai`), where
   `<name>` is the archive's name without its suffix, e.g. `oxford-iiit-pet` for `URLs.PETS`;
3. the archive in `<archive>` (default `$FASTAI_HOME/archive`), extracted into `<data>/<name>`.

Otherwise it raises `DataError` in one line naming the folder to fill and the URL to fetch it from.

Example:
    >>> path = untar_data(URLs.PETS)  # doctest: +SKIP
    >>> path.ls()  # doctest: +SKIP
    [Path('/root/.fastai/data/oxford-iiit-pet/annotations'), Path('/root/.fastai/data/oxford-iiit-pet/images')]
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from urllib.parse import urlparse

from unfreeze.data.sources import DataError
from unfreeze.fastai_names import Path

__all__ = ["URLs", "untar_data"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


class URLs:
    """Where fastai publishes its datasets (fastai's `URLs` constants), for `untar_data`.

    Example:
        >>> URLs.PETS.rsplit("/", 1)[-1]
        'oxford-iiit-pet.tgz'
    """

    S3 = "https://s3.amazonaws.com/fast-ai-"
    URL = f"{S3}sample/"
    S3_IMAGE = f"{S3}imageclas/"
    S3_IMAGELOC = f"{S3}imagelocal/"
    # image classification
    PETS = f"{S3_IMAGE}oxford-iiit-pet.tgz"
    IMAGENETTE = f"{S3_IMAGE}imagenette2.tgz"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette2-320.tgz"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof2-320.tgz"
    MNIST = f"{S3_IMAGE}mnist_png.tgz"
    CIFAR = f"{S3_IMAGE}cifar10.tgz"
    CIFAR_100 = f"{S3_IMAGE}cifar100.tgz"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers.tgz"
    FOOD = f"{S3_IMAGE}food-101.tgz"
    CARS = f"{S3_IMAGE}stanford-cars.tgz"
    BIRDS = f"{S3_IMAGE}CUB_200_2011.tgz"
    CALTECH_101 = f"{S3_IMAGE}caltech_101.tgz"
    DOGS = f"{URL}dogscats.tgz"
    MNIST_SAMPLE = f"{URL}mnist_sample.tgz"
    MNIST_TINY = f"{URL}mnist_tiny.tgz"
    MNIST_VAR_SIZE_TINY = f"{S3_IMAGE}mnist_var_size_tiny.tgz"
    # points (fastbook chapter 6's head pose)
    BIWI_HEAD_POSE = f"{S3_IMAGELOC}biwi_head_pose.tgz"
    BIWI_SAMPLE = f"{URL}biwi_sample.tgz"
    # multi-label (fastbook chapter 6)
    PASCAL_2007 = f"{S3_IMAGELOC}pascal_2007.tgz"
    PLANET_SAMPLE = f"{URL}planet_sample.tgz"
    PLANET_TINY = f"{URL}planet_tiny.tgz"


def _name(url: str) -> tuple[str, str]:
    """(archive file name, dataset folder name) of a URL or path: oxford-iiit-pet.tgz, oxford-iiit-pet."""
    file_name = Path(urlparse(url).path).name
    if not file_name:
        raise DataError(f"untar_data: {url!r} names no archive. Expected a URL such as URLs.PETS, a folder or an "
                        "archive file (.tgz, .tar.gz, .zip).")
    for suffix in _ARCHIVE_SUFFIXES:
        if file_name.lower().endswith(suffix):
            return file_name, file_name[: -len(suffix)]
    return file_name, file_name


def _home() -> Path:
    return Path(os.environ.get("FASTAI_HOME", "~/.fastai")).expanduser()


def _extract(archive: Path, destination: Path) -> Path:
    """Extract `archive` so that its content ends up in `destination` (a folder that does not exist yet)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}.") as scratch:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(scratch)  # zipfile drops ".." and absolute parts of member names
            else:
                with tarfile.open(archive) as tarred:
                    # The "data" filter refuses links out of the folder, absolute paths and devices.
                    tarred.extractall(scratch, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
            raise DataError(f"untar_data: cannot extract {archive} ({error}). Expected a .tgz, .tar or .zip "
                            "archive; download it again.") from error
        entries = list(Path(scratch).iterdir())
        # fastai's archives hold one top folder named like the archive: that folder is the dataset.
        if len(entries) == 1 and entries[0].is_dir():
            shutil.move(entries[0], destination)
        else:
            destination.mkdir()
            for entry in entries:
                shutil.move(entry, destination / entry.name)
    return destination


def untar_data(url: str | os.PathLike[str], archive: str | os.PathLike[str] | None = None,
               data: str | os.PathLike[str] | None = None) -> Path:
    """The folder of a fastai dataset, found locally (see the module docstring for the order).

    Args:
        url: A `URLs` constant, another archive URL, or a local folder or archive (a string or a path).
        archive: The folder of downloaded archives (default `$FASTAI_HOME/archive`).
        data: The folder of extracted datasets (default `$FASTAI_HOME/data`).

    Returns:
        The dataset's folder, as a `Path` that has `.ls()`.

    Raises:
        DataError: The dataset is nowhere here; the one-line message says where to put it.

    Example:
        >>> path = untar_data(URLs.PASCAL_2007)  # doctest: +SKIP
        >>> df = pd.read_csv(path/'train.csv')  # doctest: +SKIP
    """
    url = os.fspath(url)
    local = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
    if "://" not in url or url.startswith("file://"):
        if local.is_dir():
            return local
        if local.is_file():
            _, name = _name(str(local))
            target = Path(data).expanduser() if data is not None else local.parent
            return target / name if (target / name).is_dir() else _extract(local, target / name)
        raise DataError(f"untar_data: {local} does not exist. Expected a dataset folder, an archive file or a "
                        "URL such as URLs.PETS.")
    file_name, name = _name(url)
    data_dir = Path(data).expanduser() if data is not None else _home() / "data"
    archive_dir = Path(archive).expanduser() if archive is not None else _home() / "archive"
    if (data_dir / name).is_dir():
        return data_dir / name
    if (archive_dir / file_name).is_file():
        return _extract(archive_dir / file_name, data_dir / name)
    raise DataError(f"untar_data: {name} is not on this machine and unfreeze does not download datasets; put the "
                    f"extracted folder at {data_dir / name} or the archive at {archive_dir / file_name} "
                    f"(from {url}), or pass a local folder.")
