# ruff: noqa: F403, F405
"""More fastbook (chapters 1, 2, 5) and fastai-docs cells, ported with only the import changed.

Each test runs a cell as the book or the docs write it, on tiny images made at test time.
"""

from __future__ import annotations

import tarfile
import warnings

import pytest

from unfreeze import *  # the point of these tests

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning",
                                        "ignore::unfreeze.data.DataWarning")


def test_untar_data_takes_a_path_object_of_a_local_archive(tmp_path, write_image):
    write_image(tmp_path / "packed" / "bears" / "grizzly" / "1.png")
    archive = tmp_path / "bears.tgz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(tmp_path / "packed" / "bears", arcname="bears")

    path = untar_data(Path(archive))

    assert path == tmp_path / "bears" and path.ls() == [path/'grizzly']
    assert untar_data(path) == path  # the extracted folder, as a pathlib path too


@pytest.fixture
def bears(tmp_path, write_image):
    """bears/<kind>/*.jpg as chapter 2's download leaves them, with two broken downloads among them."""
    path = tmp_path / "bears"
    for kind_index, kind in enumerate(("black", "grizzly", "teddy")):
        for index in range(4):
            write_image(path / kind / f"{index:08d}.jpg", (28, 24), (60 * kind_index, 90, 160), seed=index)
    (path / "grizzly" / "00000009.jpg").write_text("<html>403 Forbidden</html>")  # a web page saved as .jpg
    whole = (path / "teddy" / "00000000.jpg").read_bytes()
    (path / "teddy" / "00000009.jpg").write_bytes(whole[: len(whole) // 2])  # a download cut off half way
    return path


def test_chapter_2_verify_images_finds_the_broken_downloads_and_unlink_removes_them(bears):
    fns = get_image_files(bears)
    failed = verify_images(fns)

    assert len(fns) == 14 and sorted(f.name for f in failed) == ["00000009.jpg", "00000009.jpg"]
    assert sorted(failed.map(parent_label)) == ["grizzly", "teddy"]
    failed.map(Path.unlink)
    assert len(get_image_files(bears)) == 12 and len(verify_images(get_image_files(bears))) == 0


def test_get_image_files_gives_an_l_and_takes_one_folder_name(tmp_path, write_image):
    for split in ("train", "valid"):
        for kind in ("cat", "dog"):
            write_image(tmp_path / split / kind / f"{kind}_1.png")

    files = get_image_files(tmp_path)
    valid = get_image_files(tmp_path, folders="valid")

    assert files.map(lambda f: f.name) == ["cat_1.png", "dog_1.png"] * 2
    assert files.attrgot("name")[:2] == ["cat_1.png", "dog_1.png"]
    assert valid == get_image_files(tmp_path, folders=["valid"]) == files[2:]


def test_vision_learner_model_indexes_as_body_then_head(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(16), bs=4, seed=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False)
    learn.model.eval()
    x = torch.rand(2, 3, 16, 16)

    assert len(learn.model) == 2 and learn.model[0] is learn.model.body and learn.model[-1] is learn.model.head
    assert learn.model[1][-1].out_features == dls.c  # the head's last layer, as in fastai
    assert torch.equal(learn.model[1](learn.model[0](x)), learn.model(x))
    with pytest.raises(IndexError, match=r"0 \(the body\) or 1 \(the head\)"):
        learn.model[2]


@pytest.fixture
def pascal_df(tmp_path, write_image):
    """PASCAL in miniature: train/*.jpg and its DataFrame (fname, space-separated labels, is_valid)."""
    path = tmp_path / "pascal_2007"
    rows = []
    for index in range(12):
        labels = ["car", "dog", "person"][index % 3] + (" cat" if index % 4 == 0 else "")
        write_image(path / "train" / f"{index:06d}.jpg", (32, 28), (70 * (index % 3), 90, 150), seed=index)
        rows.append({"fname": f"{index:06d}.jpg", "labels": labels, "is_valid": index >= 9})
    return path, pd.DataFrame(rows)


def test_vision_tutorial_multi_label_datablock_with_col_reader_and_col_splitter(pascal_df, capsys):
    path, df = pascal_df
    pascal = DataBlock(blocks=(ImageBlock, MultiCategoryBlock),
                       splitter=ColSplitter('is_valid'),
                       get_x=ColReader('fname', pref=str(path/'train') + os.path.sep),
                       get_y=ColReader('labels', label_delim=' '),
                       item_tfms=Resize(24),
                       batch_tfms=aug_transforms(size=16))
    pascal.summary(df)
    dls = pascal.dataloaders(df, bs=4)

    assert "split: 9 train, 3 valid by ColSplitter('is_valid')" in capsys.readouterr().out
    assert dls.vocab == ["car", "cat", "dog", "person"]
    assert [file.name for file, _ in dls.valid_ds.items] == ["000009.jpg", "000010.jpg", "000011.jpg"]
    assert dls.train_ds.items[0] == (path / "train" / "000000.jpg", ("car", "cat"))
    assert ColReader(0, pref=path/'train')(df.iloc[1]) == f"{path/'train'}{os.path.sep}000001.jpg"
    assert ColReader(["fname", "is_valid"])(df.iloc[11]) == ["000011.jpg", True]
    assert ColSplitter()(df) == ColSplitter(2)(df) == (list(range(9)), [9, 10, 11])
    assert ColSplitter('labels', on='car')(df)[1] == [3, 6, 9]
    assert ColSplitter('labels', on=['dog', 'person'])(df)[1][:2] == [1, 2]


def test_col_splitter_refuses_a_column_of_strings(pascal_df):
    _, df = pascal_df
    df["is_valid"] = df["is_valid"].astype(str)  # "True"/"False": every one would be true as a bool

    with pytest.raises(DataError, match=r"'is_valid' holds text.*True or False"):
        ColSplitter('is_valid')(df)


def test_chapter_2_download_and_cleaner_cells_fail_in_one_line_naming_what_to_use(tmp_path):
    with pytest.raises(NotImplementedError, match=r"does not download.*get_image_files"):
        search_images_ddg('grizzly bear', max_images=150)
    with pytest.raises(NotImplementedError, match=r"does not download"):
        download_images(tmp_path, urls=["https://example.com/grizzly.jpg"])
    with pytest.raises(NotImplementedError, match=r"unfreeze clean RUN_DIR.*plot_top_losses"):
        ImageClassifierCleaner(None)


def test_resize_pad_keeps_fastais_default_pad_mode_and_says_it_pads_with_black(monkeypatch):
    from unfreeze.data import spellings

    monkeypatch.setattr(spellings, "_WARNED", set())  # the caveat is said once per process
    with pytest.warns(spellings.UnsupportedTransformWarning, match="pad_mode='reflection'.*pads with black"):
        resize = Resize(128, ResizeMethod.Pad)
    assert resize.pad_mode == "reflection"  # fastai's default, PadMode.Reflection
    monkeypatch.setattr(spellings, "_WARNED", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Resize(128, ResizeMethod.Pad, pad_mode='zeros')  # chapter 2's spelling: what unfreeze does, no warning
        Resize(128, ResizeMethod.Squish)


def test_pad_mode_names_as_in_fastais_docs(monkeypatch):
    from unfreeze.data import spellings

    monkeypatch.setattr(spellings, "_WARNED", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resize = Resize(128, ResizeMethod.Pad, pad_mode=PadMode.Zeros)
    assert resize.pad_mode == "zeros" and (PadMode.Border, PadMode.Reflection) == ("border", "reflection")
    with pytest.warns(spellings.UnsupportedTransformWarning, match="pad_mode='border'"):
        Resize(128, ResizeMethod.Pad, pad_mode=PadMode.Border)


def test_interpretation_from_learner_on_the_training_set_with_ds_idx(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(16), bs=4, seed=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=error_rate)

    train = ClassificationInterpretation.from_learner(learn, ds_idx=0)
    valid = ClassificationInterpretation.from_learner(learn, 1)  # fastai's order: learn, ds_idx, dl

    assert train.confusion_matrix().sum() == len(dls.train_ds) == 12
    assert valid.confusion_matrix().sum() == len(dls.valid_ds) == 6
    assert torch.allclose(train.probs, learn.get_preds(ds_idx=0)[0])
    with pytest.raises(ValueError, match="ds_idx must be 0"):
        ClassificationInterpretation.from_learner(learn, ds_idx=2)
