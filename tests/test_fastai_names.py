"""The names fastai notebooks use unimported: Path.ls, tensor, to_cpu, and the lazily loaded modules."""

from __future__ import annotations

import sys
from collections import namedtuple

import numpy as np
import pytest
import torch

import unfreeze
from unfreeze.fastai_names import LAZY_NAMES, MissingModule, Path, load_lazy, tensor, to_cpu


def test_path_ls_lists_sorted_entries_and_filters(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    path = Path(tmp_path)
    assert path.ls() == [path/'a.jpg', path/'b.png', path/'notes.txt', path/'sub']
    assert path.ls(file_type="image") == [path/'a.jpg', path/'b.png']
    assert path.ls(file_exts=[".txt"]) == [path/'notes.txt'] and len(path.ls(n_max=2)) == 2
    assert isinstance(path / "sub", Path) and repr(Path("a/b")) == "Path('a/b')"
    assert type(path.ls()).__name__ == "L"  # fastcore's list, as fastai returns


def test_tensor_takes_what_fastais_takes():
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]
    assert tensor(np.array([0.5, 1.5])).dtype == torch.float32  # float64 becomes float32
    assert tensor([torch.zeros(2), torch.ones(2)]).shape == (2, 2)
    same = torch.arange(3)
    assert tensor(same) is same


def test_to_cpu_keeps_the_containers():
    Pair = namedtuple("Pair", "x y")
    moved = to_cpu({"batch": (torch.zeros(1), [torch.ones(1)]), "pair": Pair(torch.zeros(1), 3), "name": "a"})
    assert isinstance(moved["pair"], Pair) and moved["pair"].y == 3 and moved["name"] == "a"
    assert isinstance(moved["batch"], tuple) and moved["batch"][1][0].device.type == "cpu"


def test_a_missing_optional_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    pd = load_lazy("pd")
    assert isinstance(pd, MissingModule)
    with pytest.raises(ModuleNotFoundError, match=r"pandas is not installed; .* pip install 'unfreeze\[fastai\]'"):
        pd.read_csv("labels.csv")


def test_the_package_hands_out_every_lazy_name():
    assert set(LAZY_NAMES) <= set(unfreeze.__all__) <= set(dir(unfreeze))
    assert unfreeze.F is torch.nn.functional and unfreeze.partial.__name__ == "partial"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        unfreeze.no_such_name  # noqa: B018
