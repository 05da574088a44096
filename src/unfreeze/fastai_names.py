"""The everyday names fastai notebooks use without importing them: `Path` with `.ls()`, `tensor`, `to_cpu`,
and the modules `from unfreeze import *` hands out lazily (`pd`, `plt`, `L`, ...).

fastai adds `ls` to `pathlib.Path` by monkey patching; here `Path` is a subclass, so only paths made
through unfreeze's `Path` (and `untar_data`) have it, and no other library sees a changed class.
`LAZY_NAMES` lists what the package's `__getattr__` imports on first use: `import unfreeze` stays as
fast as before, and pandas or pyplot load only for the star import that asks for them.

Example:
    >>> tensor(1, 2, 3)
    tensor([1, 2, 3])
    >>> Path("pets").ls()  # doctest: +SKIP
    [Path('pets/images'), Path('pets/labels.csv')]
"""

from __future__ import annotations

import importlib
import mimetypes
import pathlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: `import unfreeze` must not wait for it
    import torch

__all__ = ["LAZY_NAMES", "MissingModule", "Path", "load_lazy", "tensor", "to_cpu"]

# name -> (module, attribute or None for the module itself, the pip extra that installs it or None)
LAZY_NAMES: dict[str, tuple[str, str | None, str | None]] = {
    "pd": ("pandas", None, "fastai"),
    "np": ("numpy", None, None),
    "torch": ("torch", None, None),
    "nn": ("torch.nn", None, None),
    "F": ("torch.nn.functional", None, None),
    "plt": ("matplotlib.pyplot", None, None),
    "partial": ("functools", "partial", None),
    "L": ("fastcore.foundation", "L", None),
}


class MissingModule(ModuleType):
    """Stands for an optional package that is not installed: any use says how to install it.

    Example:
        >>> pd = MissingModule("pandas", "fastai")
        >>> pd.read_csv("labels.csv")  # doctest: +SKIP
        ModuleNotFoundError: pandas is not installed; install it with pip install 'unfreeze[fastai]'.
    """

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(package)
        self.__install = f"pip install 'unfreeze[{extra}]'"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (help(), copy, pickle) must not raise the install hint
            raise AttributeError(name)
        raise ModuleNotFoundError(f"{self.__name__} is not installed; install it with {self.__install}.")


def load_lazy(name: str) -> Any:
    """Import the object `LAZY_NAMES[name]` names; a missing optional package gives a `MissingModule`.

    Example:
        >>> load_lazy("partial").__name__
        'partial'
    """
    module_name, attribute, extra = LAZY_NAMES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if extra is None:
            raise
        return MissingModule(module_name.split(".")[0], extra)
    return module if attribute is None else getattr(module, attribute)


class Path(type(pathlib.Path())):  # type: ignore[misc]  # PosixPath or WindowsPath, as pathlib.Path() picks
    """`pathlib.Path` with fastai's `ls()`; `path / "images"` is a `Path` too.

    Example:
        >>> (Path("pets") / "images").name
        'images'
    """

    def ls(self, n_max: int | None = None, file_type: str | None = None,
           file_exts: str | list[str] | None = None) -> Any:
        """The folder's entries, sorted by name, as fastcore's `L` (fastai's `path.ls()`).

        Args:
            n_max: At most this many entries.
            file_type: Only files of this MIME type family, e.g. "image".
            file_exts: Only these suffixes, e.g. ".jpg" or [".jpg", ".png"].

        Example:
            >>> Path("pets").ls(file_exts=".csv")  # doctest: +SKIP
            [Path('pets/labels.csv')]
        """
        exts = [file_exts] if isinstance(file_exts, str) else list(file_exts or [])
        if file_type is not None:
            exts += [ext for ext, kind in mimetypes.types_map.items() if kind.startswith(file_type + "/")]
        entries = sorted(entry for entry in self.iterdir() if not exts or entry.suffix.lower() in exts)
        return load_lazy("L")(entries[:n_max] if n_max is not None else entries)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"  # as fastai prints paths


def tensor(x: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """fastai's `tensor`: a tensor from numbers, lists, arrays or tensors; float64 becomes float32.

    Example:
        >>> tensor([1.0, 2.0]).dtype, tensor(1, 2).tolist()
        (torch.float32, [1, 2])
    """
    import torch

    values = (x, *rest) if rest else x
    if isinstance(values, torch.Tensor):
        result = values
    elif isinstance(values, (list, tuple)) and values and all(isinstance(v, torch.Tensor) for v in values):
        result = torch.stack(list(values))
    elif hasattr(values, "to_numpy"):  # a pandas Series or DataFrame: copied, its array may be read-only
        result = torch.tensor(values.to_numpy(), **kwargs)
    else:  # numbers, (nested) lists, numpy arrays
        result = torch.as_tensor(values, **kwargs)
    return result.float() if result.dtype == torch.float64 else result


def to_cpu(batch: Any) -> Any:
    """Every tensor in `batch` (a tensor, or tuples, lists and dicts of them) moved to the CPU.

    Example:
        >>> x, y = to_cpu((torch.zeros(2), torch.ones(2)))
        >>> x.device.type
        'cpu'
    """
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.cpu()
    if isinstance(batch, Mapping):
        return type(batch)({key: to_cpu(value) for key, value in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, (list, tuple)):
        moved = [to_cpu(value) for value in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
