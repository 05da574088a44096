"""DataBlock helpers: listing, labelling, splitting, and the errors users meet first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unfreeze.data import (
    CategoryBlock,
    DataBlock,
    DataError,
    GrandparentSplitter,
    ImageBlock,
    MultiCategoryBlock,
    PILImage,
    RandomSplitter,
    RegexLabeller,
    Resize,
    aug_transforms,
    get_image_files,
    parent_label,
    using_attr,
)
from unfreeze.tasks import MultiLabel


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
    with pytest.raises(ValueError, match=r"RegressionBlock or PointBlock targets; got ImageBlock"):
        DataBlock(blocks=(ImageBlock, ImageBlock), get_y=parent_label)
    with pytest.raises(ValueError, match="needs get_y"):
        DataBlock(blocks=(ImageBlock(), CategoryBlock()), get_items=get_image_files)
    block = DataBlock(get_items=get_image_files, get_y=lambda path: path.missing_attribute)
    with pytest.raises(DataError, match=r"get_y .* failed on"):
        block.dataloaders(make_image_folder())
    with pytest.raises(DataError, match="No items"):
        DataBlock(get_y=parent_label).dataloaders([])


def _table(root: Path, write_image) -> list[dict]:
    rows = []
    for index, labels in enumerate(["cat dog", "dog", "", "cat", "cat dog", "dog"]):
        write_image(root / f"{index}.png", seed=index)
        rows.append({"fname": f"{index}.png", "labels": labels, "valid": index >= 4})
    return rows


def test_multi_category_block_labels_dataframe_rows(tmp_path: Path, write_image) -> None:
    rows = pd.DataFrame(_table(tmp_path, write_image))
    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_x=lambda r: tmp_path / r["fname"],
                      get_y=lambda r: r["labels"].split(" "),
                      splitter=lambda df: (df.index[~df["valid"]].tolist(), df.index[df["valid"]].tolist()))
    dls = block.dataloaders(rows, bs=2)
    assert isinstance(dls.task, MultiLabel) and dls.vocab == ["cat", "dog"] and dls.path == Path(".")
    assert dls.train_ds.items[0] == (tmp_path / "0.png", ("cat", "dog")) and dls.train_ds.items[2][1] == ()
    assert dls.train_ds.targets.tolist()[:3] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    assert block.dataloaders(rows, path=tmp_path, bs=2).path == tmp_path


def test_multi_category_block_mistakes_say_what_to_pass(tmp_path: Path, write_image) -> None:
    rows = pd.DataFrame(_table(tmp_path, write_image))
    as_string = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_x=lambda r: tmp_path / r["fname"],
                          get_y=lambda r: r["labels"])
    with pytest.raises(DataError, match=r"must return a list of labels.*split\(' '\)"):
        as_string.dataloaders(rows)
    no_get_x = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=lambda r: r["labels"])
    with pytest.raises(DataError, match=r"must lead to an image path.*get_x"):
        no_get_x.dataloaders(rows)


def test_pil_image_create_opens_paths_and_uploaded_bytes(tmp_path: Path, write_image) -> None:
    file = write_image(tmp_path / "cat.png", (30, 20))
    from_path, from_bytes = PILImage.create(file), PILImage.create(file.read_bytes())
    assert from_path.mode == from_bytes.mode == "RGB" and from_path.size == from_bytes.size == (30, 20)
    assert (np.asarray(from_path) == np.asarray(from_bytes)).all()


def test_show_batch_unique_repeats_one_item_with_its_own_draws(make_image_folder) -> None:
    block = DataBlock(get_items=get_image_files, get_y=parent_label, splitter=GrandparentSplitter(),
                      item_tfms=Resize(16), batch_tfms=aug_transforms(max_warp=0))
    loader = block.dataloaders(make_image_folder(), bs=4, seed=0).train
    images, labels = loader.preview(4, unique=True)
    assert len(set(labels.tolist())) == 1 and not torch.equal(images[0], images[1])
