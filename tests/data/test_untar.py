"""untar_data: local folders and archives, fastai's cache layout, safe extraction, one-line errors."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from unfreeze.data import DataError, URLs, untar_data


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_local_folder_is_returned_as_it_is(tmp_path, home):
    (tmp_path / "pets").mkdir()
    assert untar_data(str(tmp_path / "pets")) == tmp_path / "pets"
    assert untar_data(f"file://{tmp_path / 'pets'}") == tmp_path / "pets"


def test_an_extracted_dataset_in_the_data_folder_is_found(home):
    (home / "data" / "mnist_sample" / "train").mkdir(parents=True)
    path = untar_data(URLs.MNIST_SAMPLE)
    assert path == home / "data" / "mnist_sample" and path.ls() == [path/'train']
    assert untar_data(URLs.MNIST_SAMPLE, data=home / "data") == path


def test_a_zip_with_several_top_entries_is_extracted_into_the_dataset_folder(tmp_path, home):
    with zipfile.ZipFile(tmp_path / "tiny.zip", "w") as archive:
        archive.writestr("labels.csv", "fname,label\n")
        archive.writestr("train/a.txt", "x")
    path = untar_data(str(tmp_path / "tiny.zip"), data=tmp_path / "out")
    assert path == tmp_path / "out" / "tiny" and sorted(p.name for p in path.ls()) == ["labels.csv", "train"]
    assert not [entry for entry in (tmp_path / "out").iterdir() if entry.name.startswith(".")]  # no scratch left


def test_an_archive_member_escaping_the_folder_is_refused(tmp_path, home):
    (home / "archive").mkdir(parents=True)
    with tarfile.open(home / "archive" / "pascal_2007.tgz", "w:gz") as archive:
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = 1
        archive.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="cannot extract"):
        untar_data(URLs.PASCAL_2007)
    assert not (home / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (home / "data" / "pascal_2007").exists()


def test_a_missing_dataset_says_where_to_put_it_in_one_line(home, tmp_path):
    with pytest.raises(DataError) as caught:
        untar_data(URLs.IMAGENETTE_160)
    message = str(caught.value)
    assert "\n" not in message and "does not download" in message
    assert str(home / "data" / "imagenette2-160") in message
    assert str(home / "archive" / "imagenette2-160.tgz") in message
    with pytest.raises(DataError, match="does not exist"):
        untar_data(str(tmp_path / "nowhere"))
