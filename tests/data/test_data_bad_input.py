"""Each bad input from issue 2, with real files: skipped with one warning, or a clear DataError."""

import os
import warnings
from pathlib import Path

import pytest

from unfreeze.data import DataError, DataWarning, ImageDataLoaders
from unfreeze.data.split import split_items


def _load(root: Path, **options) -> tuple[ImageDataLoaders, list[str]]:
    options = {"size": 16, "bs": 4, "seed": 0, "num_workers": 0} | options
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dls = ImageDataLoaders.from_folder(root, **options)
    return dls, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def _epoch(loader) -> tuple[int, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = sum(len(labels) for _, labels in loader)
    return seen, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def _paths(dls: ImageDataLoaders) -> set[str]:
    return {path.name for path, _ in dls.train.dataset.items + dls.valid.dataset.items}


def test_zero_byte_file(make_image_folder):
    root = make_image_folder()
    (root / "train" / "cat" / "empty.png").touch()
    dls, messages = _load(root)
    assert "empty.png" not in _paths(dls)
    assert len(messages) == 1 and "Skipped 1 " in messages[0] and "empty.png (empty file (0 bytes))" in messages[0]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_are_dropped_in_the_first_pass(make_image_folder, suffix: str, write_image):
    root = make_image_folder(n_train=10)
    for index in range(2):
        good = write_image(root / "train" / "cat" / f"cut{index}{suffix}", (64, 64), seed=index)
        good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    dls, messages = _load(root, bs=4, num_workers=2)  # 22 items > 2 batches: decoded by workers
    assert messages == []  # truncation is only found when decoding
    seen, messages = _epoch(dls.train)
    assert len(messages) == 1 and "Skipped 2 " in messages[0] and f"cut0{suffix}" in messages[0]
    assert seen == 20 - 2  # 22 items, drop_last leaves 20 slots, two of them dropped
    dls.train.set_epoch(1)
    seen_later, later_messages = _epoch(dls.train)
    assert later_messages == [] and seen_later <= 20 and len(dls.train.dataset.dropped) == 2


def test_text_file_named_jpg(make_image_folder):
    root = make_image_folder()
    (root / "valid" / "dog" / "notes.jpg").write_text("not an image")
    dls, _ = _load(root)
    seen, messages = _epoch(dls.valid)
    assert seen == 6 and len(messages) == 1 and "notes.jpg" in messages[0]


def test_hidden_files_are_ignored_silently(make_image_folder):
    root = make_image_folder()
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1\2")
    (root / "train" / "cat" / "._foo.jpg").write_bytes(b"\0\5\6\7")
    dls, messages = _load(root)
    assert messages == [] and not {".DS_Store", "._foo.jpg"} & _paths(dls)


def test_non_image_files_in_a_class_folder(make_image_folder):
    root = make_image_folder()
    (root / "train" / "cat" / "readme.txt").write_text("hello")
    (root / "train" / "dog" / "labels.csv").write_text("a,b")
    dls, messages = _load(root)
    assert len(messages) == 1 and "Skipped 2 " in messages[0] and "readme.txt" in messages[0]
    assert len(dls.train.dataset) == 12


def test_broken_symlink(make_image_folder):
    root = make_image_folder()
    os.symlink(root / "nowhere.png", root / "train" / "cat" / "link.png")
    dls, messages = _load(root)
    assert "link.png" not in _paths(dls) and "broken symbolic link" in messages[0]


def test_directory_named_like_an_image(make_image_folder):
    root = make_image_folder()
    (root / "train" / "cat" / "folder.jpg").mkdir()
    dls, messages = _load(root)
    assert "folder.jpg" in messages[0] and "directory" in messages[0] and len(dls.train.dataset) == 12


def test_empty_class_folder_is_not_a_class(make_image_folder):
    root = make_image_folder()
    (root / "train" / "bird").mkdir()
    dls, messages = _load(root)
    assert dls.vocab == ["cat", "dog"]
    assert any("bird" in message and "no images" in message for message in messages)


def test_run_directories_inside_the_data_are_not_classes(make_image_folder, write_image):
    # `unfreeze train photos --out photos/run1`, or `cd photos; unfreeze train .` (runs/<name>/ by default):
    # the next train read the run's plots as images of a class "run1" or "runs".
    root = make_image_folder(flat=True)
    for run in (root / "run1", root / "runs" / "images-test_resnet"):
        write_image(run / "loss.png")
        write_image(run / "confusion_matrix.png", seed=1)
        (run / "config.json").write_text("{}")
        (run / "checkpoint.pt").write_bytes(b"x")
    dls, messages = _load(root, valid_pct=0.5)
    assert dls.vocab == ["cat", "dog"] and not {"loss.png", "confusion_matrix.png"} & _paths(dls)
    assert any(str(root / "run1") in message and "unfreeze run directory" in message for message in messages)


def test_class_with_a_single_image_is_kept(make_image_folder, write_image):
    root = make_image_folder(flat=True)
    write_image(root / "bird" / "only.png")
    dls, messages = _load(root, valid_pct=0.5)
    assert "bird" in dls.vocab and any(label == "bird" for _, label in dls.train.dataset.items)
    assert any("no validation image" in message and "bird (1 image)" in message for message in messages)


def test_many_classes_without_validation_images_are_counted_not_all_named(tmp_path, write_image):
    # 200 classes of one image: the warning used to name all 200, a screenful for one line of news.
    root = tmp_path / "many"
    for index in range(200):
        write_image(root / f"c{index:03d}" / "only.png", seed=index)
    write_image(root / "c000" / "second.png")
    write_image(root / "c000" / "third.png", seed=1)
    _, messages = _load(root, valid_pct=0.4)
    message = next(message for message in messages if "no validation image" in message)
    assert message.startswith("200 class(es)") or message.startswith("199 class(es)")
    assert "c001 (1 image)" in message and "c199" not in message and "more" in message
    assert len(message) < 500


def test_valid_pct_leaving_a_class_without_validation_images(make_image_folder, write_image):
    root = make_image_folder(classes=("cat",), n_train=20, n_valid=0, flat=True)
    for index in range(3):
        write_image(root / "dog" / f"dog_{index}.png", seed=index)
    items = [(path, path.parent.name) for path in sorted(root.rglob("*.png"))]
    seed = next(seed for seed in range(100)
                if "dog" not in {label for _, label in split_items(items, 0.1, seed)[1]})
    dls, messages = _load(root, valid_pct=0.1, seed=seed)
    assert dls.vocab == ["cat", "dog"]
    assert any("no validation image" in message and "dog (3 images)" in message for message in messages)


def test_fewer_than_two_classes(make_image_folder):
    root = make_image_folder(classes=("cat",))
    with pytest.raises(DataError, match=r"at least 2 classes") as error:
        _load(root)
    assert str(root) in str(error.value)


def test_no_images_at_all(tmp_path: Path):
    for split in ("train", "valid"):
        (tmp_path / split / "cat").mkdir(parents=True)
        (tmp_path / split / "cat" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="No training images"):
        _load(tmp_path)


def test_root_that_does_not_exist(tmp_path: Path):
    with pytest.raises(DataError, match="does_not_exist") as error:
        ImageDataLoaders.from_folder(tmp_path / "does_not_exist")
    assert "Expected" in str(error.value)


def test_missing_train_folder_explains_the_layout(make_image_folder):
    root = make_image_folder(flat=True)
    with pytest.raises(DataError, match="valid_pct"):
        ImageDataLoaders.from_folder(root)


def test_csv_row_naming_a_missing_file(make_image_folder):
    # The README: "a CSV naming missing files ... stop[s] with an error that names the path" (issue 18).
    root = make_image_folder(flat=True)
    rows = [f"{path.relative_to(root)},{path.parent.name}" for path in sorted(root.rglob("*.png"))]
    (root / "labels.csv").write_text("\n".join(["file,label", *rows, "cat/ghost.png,cat"]) + "\n")
    with pytest.raises(DataError, match=r"names 1 file\(s\) that do not exist .* cat/ghost.png \(line 20\)"):
        ImageDataLoaders.from_csv(root, seed=0, size=16, bs=4)


def test_regex_matching_no_file_name(make_image_folder):
    root = make_image_folder(flat=True)
    with pytest.raises(DataError, match=r"matched none") as error:
        ImageDataLoaders.from_name_re(root, None, r"^(\d+)_pet\.jpg$")
    assert str(root) in str(error.value)
