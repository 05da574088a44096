"""--size is bounded: 50000 px used to be accepted and exhausted the memory at the first batch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import ImageDataLoaders
from unfreeze.data import MAX_SIZE


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_size_above_the_export_cap_is_refused(command: str, tiny_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, str(tiny_data), *TINY[:3], "--size", "50000"]
    line = run_user_error(argv + (["--out", str(tmp_path / "run")] if command == "train" else []), capsys)
    assert "--size" in line and f"from 1 to {MAX_SIZE}" in line and "'50000'" in line
    assert not (tmp_path / "run").exists()


def test_convert_fastai_size_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["convert-fastai", str(tmp_path / "w.pth"), "--arch", "test_resnet", "--vocab", "a,b",
                           "--size", "20000"], capsys)
    assert "--size" in line and f"from 1 to {MAX_SIZE}" in line


def test_the_largest_size_is_accepted_by_the_parser() -> None:
    from unfreeze.cli import build_parser

    assert build_parser().parse_args(["train", "data", "--size", str(MAX_SIZE)]).size == MAX_SIZE


def test_the_python_api_is_bounded_too(tiny_data: Path) -> None:
    with pytest.raises(ValueError, match=rf"size <= item_size <= {MAX_SIZE}.*got size 50000"):
        ImageDataLoaders.from_folder(tiny_data, size=50_000, bs=4)


@pytest.mark.parametrize("keyword", ["size", "item_size"])
@pytest.mark.parametrize("value", [0, -3, 16.5, "64", True, (16, 24)])
def test_a_size_that_is_not_a_whole_number_of_pixels_is_refused(keyword: str, value: object, tiny_data: Path) -> None:
    """size=0 used to become the default 224 silently; 16.5 trained on no image at all; "64" and (16, 24) failed
    with a bare TypeError from a comparison."""
    with pytest.raises(ValueError, match=rf"{keyword} must be a whole number of pixels from 1 to {MAX_SIZE}, "
                                         rf"got {re.escape(repr(value))}\. Pass e\.g\. {keyword}=224"):
        ImageDataLoaders.from_folder(tiny_data, bs=4, **{keyword: value})
