"""Case 8: CSV labels (missing column, empty/NaN labels, duplicate rows) and regexes without a group."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from unfreeze import ImageDataLoaders
from unfreeze.data import DataError, DataWarning


@pytest.fixture
def folder(tmp_path: Path, write_image: Callable[..., Path]) -> Path:
    root = tmp_path / "planes"
    for index in range(12):
        write_image(root / f"img_{index}.png", seed=index, color=(200, 30, 30) if index % 2 else (30, 30, 200))
    return root


def write_csv(root: Path, rows: list[str], header: str = "file,label") -> None:
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")


def labelled(count: int = 12) -> list[str]:
    return [f"img_{index}.png,{'odd' if index % 2 else 'even'}" for index in range(count)]


@pytest.mark.parametrize("label_col", ["category", 5])
def test_missing_label_column(folder: Path, label_col: object) -> None:
    write_csv(folder, labelled())
    with pytest.raises(DataError, match=r"no column .*'file', 'label'") as caught:
        ImageDataLoaders.from_csv(folder, "labels.csv", label_col=label_col, size=16, bs=4)  # type: ignore[arg-type]
    assert repr(label_col) in str(caught.value)


def test_empty_and_nan_labels_are_dropped_with_one_warning(folder: Path) -> None:
    rows = labelled()
    rows[3], rows[4], rows[5] = "img_3.png,", "img_4.png,NaN", "img_5.png"
    write_csv(folder, rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 3 of the 9 labelled rows in validation (int(0.4 * 9), as fastai counts): both classes there.
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.4)
    data_warnings = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1, [str(w.message) for w in data_warnings]
    assert "3 rows" in str(data_warnings[0].message) and "img_4.png" in str(data_warnings[0].message)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 9


def test_every_label_empty_is_refused(folder: Path) -> None:
    write_csv(folder, [f"img_{index}.png," for index in range(12)])
    with pytest.raises(DataError, match=r"Every row .* empty label"):
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4)


def test_duplicate_rows_warn_once(folder: Path) -> None:
    write_csv(folder, [*labelled(), "img_0.png,even", "img_1.png,odd", "img_1.png,odd"])
    with pytest.warns(DataWarning, match=r"3 file\(s\) more than once.*img_0.png") as caught:
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)
    assert sum("more than once" in str(w.message) for w in caught) == 1


def test_regex_without_a_capture_group_is_refused_before_reading(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unfreeze.data.sources as sources

    def never(*args: object) -> None:
        raise AssertionError("the folder was listed")

    monkeypatch.setattr(sources, "_resolve", never)
    with pytest.raises(DataError, match="no capture group"):
        ImageDataLoaders.from_name_re(folder, None, r"^img_\d+\.png$", size=16, bs=4)


def test_one_number_spelled_two_ways_is_one_class(folder: Path) -> None:
    """'1' and '1.0' (a column saved by two tools, or pandas' floats) were two classes side by side."""
    labels = ["0", "1.0", *(["0", "1"] * 5)]
    write_csv(folder, [f"img_{index}.png,{label}" for index, label in enumerate(labels)])
    with pytest.warns(DataWarning, match=r"'1' and '1\.0' are the same number, class '1'") as caught:
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.5)
    assert dls.vocab == ["0", "1"]
    assert sum("same number" in str(w.message) for w in caught) == 1


def test_numbers_that_differ_stay_classes(folder: Path) -> None:
    write_csv(folder, [f"img_{index}.png,{index % 3}" for index in range(12)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.5)
    assert dls.vocab == ["0", "1", "2"]


@pytest.mark.parametrize(("valid", "train"), [("1.0", "0.0"), ("True", "False"), ("yes", "no"), ("valid", "train"),
                                              ("1", "")])
def test_valid_column_spellings(folder: Path, valid: str, train: str) -> None:
    """'1.0' (pandas writes a float column so) was read as "not validation": no validation set at all."""
    write_csv(folder, [f"{row},{valid if index >= 8 else train}" for index, row in enumerate(labelled())],
              header="file,label,is_valid")
    dls = ImageDataLoaders.from_csv(folder, "labels.csv", valid_col="is_valid", size=16, bs=4, seed=0)
    assert (len(dls.train.dataset), len(dls.valid.dataset)) == (8, 4)


def test_a_valid_column_value_that_is_neither_is_refused(folder: Path) -> None:
    write_csv(folder, [f"{row},{'maybe' if index == 5 else index >= 8}" for index, row in enumerate(labelled())],
              header="file,label,is_valid")
    with pytest.raises(DataError, match=r"'maybe' \(line 7\).*True/False, 1/0, yes/no or valid/train"):
        ImageDataLoaders.from_csv(folder, "labels.csv", valid_col="is_valid", size=16, bs=4, seed=0)


@pytest.mark.parametrize("mark", ["True", "0"])
def test_a_valid_column_with_one_value_is_refused(folder: Path, mark: str) -> None:
    """Every row training gave no validation set (valid_loss nan); every row validation 'No training images found
    under ... in one folder per class'."""
    write_csv(folder, [f"{row},{mark}" for row in labelled()], header="file,label,is_valid")
    with pytest.raises(DataError, match=r"'is_valid' marks every row as"):
        ImageDataLoaders.from_csv(folder, "labels.csv", valid_col="is_valid", size=16, bs=4, seed=0)


def test_multi_label_cells_split_at_another_separator_are_named(folder: Path) -> None:
    """'odd;red' with label_delim=' ' (the CLI's default) trained the classes 'even;blue' and 'odd;red', silently."""
    write_csv(folder, [f"img_{index}.png,{'odd;red' if index % 2 else 'even;blue'}" for index in range(12)])
    with pytest.warns(DataWarning, match=r"none of them holds.*';'.*'even;blue'.*label_delim=';'"):
        ImageDataLoaders.from_csv(folder, "labels.csv", label_delim=" ", size=16, bs=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", label_delim=";", size=16, bs=4, seed=0, valid_pct=0.5)
    assert dls.vocab == ["blue", "even", "odd", "red"]


def test_spaces_around_file_names_and_column_names_are_ignored(folder: Path) -> None:
    """'img_0.png ' stopped as a missing file (the space invisible in the message); 'label ' was no column 'label'."""
    write_csv(folder, [f" img_{index}.png ,{'odd' if index % 2 else 'even'}" for index in range(12)],
              header="file , label ")
    dls = ImageDataLoaders.from_csv(folder, "labels.csv", fn_col="file", label_col="label", size=16, bs=4, seed=0,
                                    valid_pct=0.5)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 12


def test_a_row_with_more_cells_than_the_header_is_refused(folder: Path) -> None:
    """A ';' CSV whose multi-label cells are also split at ';' ('img_0.png;odd;red'): the row has 3 cells for a
    2-column header, and 'red' (every class after the first) was dropped without a word."""
    write_csv(folder, [f"img_{index}.png;{'odd;red' if index % 2 else 'even;blue'}" for index in range(12)],
              header="file;label")
    with pytest.raises(DataError, match=r"line 2 has 3 cells.*header.*2 columns.*quote"):
        ImageDataLoaders.from_csv(folder, "labels.csv", label_delim=";", size=16, bs=4, seed=0)
    # Empty cells after the last column (a spreadsheet's trailing separators) are no data and stay accepted.
    write_csv(folder, [f"{row},," for row in labelled()])
    dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.5)
    assert dls.vocab == ["even", "odd"]


def test_classes_differing_only_in_case_or_separators_warn_once(folder: Path) -> None:
    """'Cat' / 'cat' and 'golden_retriever' / 'golden retriever' trained as four classes without a word."""
    labels = ["Cat", "cat", "golden_retriever", "golden retriever"] * 3
    write_csv(folder, [f"img_{index}.png,{label}" for index, label in enumerate(labels)])
    with pytest.warns(DataWarning, match=r"differ only in case or separators.*'Cat' \(3\) and 'cat' \(3\)") as caught:
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.25)
    message = [str(w.message) for w in caught if "differ only" in str(w.message)]
    assert len(message) == 1 and "'golden retriever' (3) and 'golden_retriever' (3)" in message[0]
    assert "rename" in message[0]
    assert len(dls.vocab) == 4  # still the labels as written: the user decides


def test_classes_differing_only_in_case_warn_for_folders(make_image_folder: Callable[..., Path]) -> None:
    root = make_image_folder(classes=("Dog", "dog", "cat"))
    with pytest.warns(DataWarning, match=r"differ only in case or separators.*'Dog' \(9\) and 'dog' \(9\)"):
        ImageDataLoaders.from_folder(root, size=16, bs=4)


def test_distinct_classes_do_not_warn_about_case(folder: Path) -> None:
    labels = ["cat", "cats", "dog", "hot-dog"] * 3
    write_csv(folder, [f"img_{index}.png,{label}" for index, label in enumerate(labels)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0, valid_pct=0.25)
    assert not [w for w in caught if "differ only" in str(w.message)]


def test_a_file_listed_under_two_labels_is_named(folder: Path) -> None:
    """A file listed as 'even' and again as 'odd' only got the "counts twice" warning: one image, two answers."""
    write_csv(folder, [*labelled(), "img_0.png,odd", "img_2.png,even"])
    with pytest.warns(DataWarning) as caught:
        ImageDataLoaders.from_csv(folder, "labels.csv", size=16, bs=4, seed=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    conflicting = [m for m in messages if "different labels" in m]
    assert len(conflicting) == 1 and "img_0.png ('even', 'odd')" in conflicting[0], messages
    assert "img_2.png" not in conflicting[0]  # listed twice with the same label: the duplicate warning names it
    assert sum("more than once" in m for m in messages) == 1


def test_a_constant_regression_target_warns_before_training(folder: Path) -> None:
    """A column holding one value for every training image trained (to predict that value) without a word."""
    from unfreeze.data import RegressionBlock

    write_csv(folder, [f"img_{index}.png,{index},3.5" for index in range(12)], header="file,age,height")
    with pytest.warns(DataWarning, match=r"'height' is 3\.5 for every one of the 9 training images") as caught:
        dls = ImageDataLoaders.from_csv(folder, "labels.csv", label_col=["age", "height"], y_block=RegressionBlock(),
                                        size=16, bs=4, seed=0, valid_pct=0.25)
    assert sum("for every one" in str(w.message) for w in caught) == 1 and "'age'" not in str(caught[0].message)
    assert dls.vocab == ["age", "height"]


def test_every_multi_label_cell_empty_is_refused_in_words(folder: Path) -> None:
    """Multi-label cells that are all empty (none of the classes) read "Found 0 class () under ... Expected at
    least 1 classes": the error now says that no training image has a class, and what to check."""
    write_csv(folder, [f"img_{index}.png," for index in range(12)])
    with pytest.raises(DataError) as caught:
        ImageDataLoaders.from_csv(folder, "labels.csv", label_delim=" ", size=16, bs=4)
    message = str(caught.value)
    assert "0 class ()" not in message and "no training image has a class" in message
    assert "label column" in message
