import gzip
from pathlib import Path

import numpy as np

from unfreeze.data import read_idx, sample_path
from unfreeze.data.sources import SkippedFiles, folder_items, list_image_files


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path: Path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "images.gz", images)
    assert np.array_equal(read_idx(tmp_path / "images.gz"), images)


def test_list_image_files_is_recursive_and_sorted(tmp_path: Path):
    for name in ("b/2.png", "a/1.JPG", "a/deeper/3.webp", ".hidden/4.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files = list_image_files(tmp_path, SkippedFiles())
    assert [file.relative_to(tmp_path).as_posix() for file in files] == ["a/1.JPG", "a/deeper/3.webp", "b/2.png"]


def test_list_image_files_follows_linked_folders_once(tmp_path: Path):
    # A class folder holding a link to a folder of more images: training dropped them without a word
    # (predict's iter_image_files followed the same link). A link back up the tree is listed once.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "2.png").write_bytes(b"x")
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "1.png").write_bytes(b"x")
    (cat / "more").symlink_to(elsewhere, target_is_directory=True)
    (cat / "loop").symlink_to(cat, target_is_directory=True)
    files = list_image_files(cat, SkippedFiles())
    assert [file.relative_to(cat).as_posix() for file in files] == ["1.png", "more/2.png"]


def test_a_link_up_to_the_data_folder_does_not_relabel_the_other_classes(tmp_path: Path):
    # ant/all -> the data folder: every bee image was listed a second time, labelled ant, without a word.
    for name in ("ant/1.png", "bee/2.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "ant" / "all").symlink_to(tmp_path, target_is_directory=True)
    skipped = SkippedFiles()
    items = folder_items(tmp_path, skipped, [])
    assert [(path.relative_to(tmp_path).as_posix(), label) for path, label in items] == [("ant/1.png", "ant"),
                                                                                         ("bee/2.png", "bee")]
    assert "ant/all (a link back up to " in skipped.message()


def test_skipped_files_message_names_ten_and_counts_the_rest():
    skipped = SkippedFiles()
    for index in range(13):
        skipped.add(Path(f"bad{index}.png"), "broken")
    message = skipped.message()
    assert message.startswith("Skipped 13 ") and "bad9.png" in message and "... and 3 more" in message


def test_sample_is_packaged_and_small():
    root = sample_path()
    files = list(root.rglob("*.png"))
    assert len(files) == 600 and sum(file.stat().st_size for file in files) < 2_000_000
    assert len(list((root / "train").iterdir())) == 10


def test_jfif_and_jpe_files_are_images(tmp_path: Path):
    """Chrome on Windows saves many JPEGs as .jfif: training skipped them ('not an image extension')."""
    from PIL import Image

    for name in ("a/1.jfif", "a/2.JPE", "a/3.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name, format="JPEG")
    skipped = SkippedFiles()
    files = list_image_files(tmp_path, skipped)
    assert [file.name for file in files] == ["1.jfif", "2.JPE", "3.jpg"] and not skipped
