"""DataBlock helpers: listing, labelling, splitting, and the errors users meet first."""

from __future__ import annotations

from pathlib import Path

import pytest

from unfreeze.data import (
    CategoryBlock,
    DataBlock,
    DataError,
    GrandparentSplitter,
    ImageBlock,
    RandomSplitter,
    RegexLabeller,
    get_image_files,
    parent_label,
    using_attr,
)


def test_get_image_files_recurse_and_folders(make_image_folder) -> None:
    root = make_image_folder()
    (root / "labels.csv").write_text("a,b\n")
    (root / "top.png").write_bytes((root / "train" / "cat" / "cat_0.png").read_bytes())
    assert len(get_image_files(root)) == 19
    assert get_image_files(root, recurse=False) == [root / "top.png"]
    valid = get_image_files(root, folders=["valid"])
    assert len(valid) == 6 and all(path.parts[-3] == "valid" for path in valid)
    with pytest.raises(DataError, match="test not found"):
        get_image_files(root, folders=["test"])


def test_labellers() -> None:
    path = Path("/data/pets/great_pyrenees_173.jpg")
    assert parent_label(Path("train/cat/1.jpg")) == "cat"
    assert using_attr(RegexLabeller(r"^(.+)_\d+\.jpg$"), "name")(path) == "great_pyrenees"
    assert RegexLabeller(r"(\w+?)_", match=True)("cat_1.jpg") == "cat"
    with pytest.raises(ValueError, match="has no group"):
        RegexLabeller(r"\d+")
    with pytest.raises(DataError, match=r"does not match '/data/pets/great_pyrenees_173.jpg'.*using_attr"):
        RegexLabeller(r"^(\d+)\.png$")(path)


def test_splitters() -> None:
    items = [Path(f"{split}/cat/{i}.png") for split in ("train", "valid", "test") for i in range(5)]
    assert GrandparentSplitter()(items) == (list(range(5)), list(range(5, 10)))
    assert RandomSplitter(0.2, seed=1)(items) == RandomSplitter(0.2, seed=1)(items)
    assert len(RandomSplitter(0.2, seed=1)(items)[1]) == 3


def test_datablock_errors_name_the_fix(make_image_folder) -> None:
    with pytest.raises(ValueError, match=r"blocks=\(ImageBlock, CategoryBlock\)"):
        DataBlock(blocks=(ImageBlock, ImageBlock), get_y=parent_label)
    with pytest.raises(ValueError, match="needs get_y"):
        DataBlock(blocks=(ImageBlock(), CategoryBlock()), get_items=get_image_files)
    block = DataBlock(get_items=get_image_files, get_y=lambda path: path.missing_attribute)
    with pytest.raises(DataError, match=r"get_y .* failed on"):
        block.dataloaders(make_image_folder())
    with pytest.raises(DataError, match="No items"):
        DataBlock(get_y=parent_label).dataloaders([])
