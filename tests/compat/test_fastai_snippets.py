# ruff: noqa: F403, F405
"""fastai tutorial cells (data, model, training, saving, export, interpretation, plots), ported with only
the import changed.

Each test is our own version of an idiom from fastai's tutorials and book, run on tiny generated
images; the snippet lines use nothing but `from unfreeze import *`.
"""

from __future__ import annotations

import pytest

from unfreeze import *  # the point of these tests

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning",
                                        "ignore::unfreeze.data.DataWarning")

ARCH = "test_resnet"


@pytest.fixture
def pets(tmp_path, write_image):
    """Pets-style names: cats are capitalised (Abyssinian_1.png), dogs are not (beagle_1.png)."""
    path = tmp_path / "images"
    for breed, color in (("Abyssinian", (200, 40, 40)), ("Bengal", (200, 120, 40)), ("beagle", (40, 40, 200))):
        for index in range(8):
            write_image(path / f"{breed}_{index}.png", (28, 24), color, seed=index)
    return path


def test_cats_vs_dogs_from_name_func_gets_the_file_name(pets):
    def is_cat(x):
        return x[0].isupper()

    dls = ImageDataLoaders.from_name_func(pets, get_image_files(pets), valid_pct=0.2, seed=42,
                                          label_func=is_cat, item_tfms=Resize(24), bs=8)
    learn = vision_learner(dls, ARCH, pretrained=False, metrics=error_rate)

    assert dls.vocab == ["False", "True"] and dls.size == 24
    assert dls.train.augment is None  # fastai: no batch_tfms, no augmentation
    images, _ = next(iter(dls.train))
    assert images.shape == (8, 3, 24, 24) and learn.model(images).shape == (8, 2)


def test_pets_from_name_re_with_presizing(pets):
    dls = ImageDataLoaders.from_name_re(pets, get_image_files(pets), pat=r"(.+)_\d+.png$",
                                        item_tfms=Resize(32), batch_tfms=aug_transforms(size=24, min_scale=0.75),
                                        bs=8, seed=0)

    assert dls.vocab == ["Abyssinian", "Bengal", "beagle"]
    assert (dls.size, dls.train.dataset.item_size, dls.train.augment.min_scale) == (24, 32, 0.75)
    assert next(iter(dls.train))[0].shape == (8, 3, 24, 24)
    assert next(iter(dls.valid))[0].shape[1:] == (3, 24, 24)


def test_pets_datablock_matches_the_factory_and_summarises(pets, capsys):
    pets_block = DataBlock(blocks=(ImageBlock, CategoryBlock),
                           get_items=get_image_files,
                           splitter=RandomSplitter(valid_pct=0.2, seed=42),
                           get_y=using_attr(RegexLabeller(r"(.+)_\d+.png$"), "name"),
                           item_tfms=Resize(32),
                           batch_tfms=aug_transforms(size=24, min_scale=0.75))
    pets_block.summary(pets)
    dls = pets_block.dataloaders(pets, bs=8)

    printed = capsys.readouterr().out
    assert "24 from get_image_files" in printed and "20 train, 4 valid" in printed  # int(0.2 * 24), as fastai
    assert "classes (3): Abyssinian, Bengal, beagle" in printed
    assert any(f"-> '{name}'" in printed for name in ("Abyssinian", "Bengal", "beagle"))
    assert isinstance(dls, ImageDataLoaders) and dls.size == 24
    factory = ImageDataLoaders.from_name_re(pets, None, r"(.+)_\d+.png$", valid_pct=0.2, seed=42,
                                            item_tfms=Resize(32), bs=8)
    # The same validation images (the block keeps fastai's permutation order, the factory sorts them).
    assert sorted(dls.valid.dataset.items) == factory.valid.dataset.items


def test_bears_datablock_with_parent_label_random_resized_crop_and_new(make_image_folder, tmp_path):
    path = make_image_folder(classes=("black", "grizzly", "teddy"), flat=True, n_train=5, n_valid=2)
    bears = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label,
                      item_tfms=RandomResizedCrop(16, min_scale=0.3), batch_tfms=aug_transforms(mult=2))
    dls = bears.dataloaders(path, bs=4)

    assert dls.vocab == ["black", "grizzly", "teddy"] and dls.size == 16
    assert dls.train.augment.min_scale == pytest.approx(0.3) and dls.train.augment.max_rotate == 20.0
    assert dls.valid.show_batch(max_n=4, nrows=1, path=tmp_path / "valid.png").stat().st_size > 1000

    squished = bears.new(item_tfms=Resize(16, ResizeMethod.Squish)).dataloaders(path, bs=4)
    assert squished.train.dataset.resize_method == "squish"


def test_train_valid_folders_with_grandparent_splitter(make_image_folder):
    path = make_image_folder()
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=GrandparentSplitter(), get_y=parent_label, item_tfms=Resize(16))
    dls = block.dataloaders(path, bs=4)
    assert (len(dls.train.dataset), len(dls.valid.dataset)) == (12, 6)
    folders = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4)
    assert dls.valid.dataset.items == folders.valid.dataset.items


def test_show_batch_in_a_script_saves_a_named_file(make_image_folder, tmp_path, monkeypatch, capsys):
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(16), bs=4)
    monkeypatch.chdir(tmp_path)
    saved = dls.show_batch(nrows=2, ncols=2, figsize=(4, 4))
    assert saved == Path("batch.png") and (tmp_path / "batch.png").stat().st_size > 1000
    assert str(tmp_path / "batch.png") in capsys.readouterr().out


def test_torchvision_resnet_as_arch(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(32), bs=4)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)
    assert learn.model.arch == "torchvision:resnet18" and len(learn.model.param_groups) == 3


def test_torchvision_resnet_without_weights_says_where_it_looked(make_image_folder, tmp_path, monkeypatch):
    for variable, value in (("TORCH_HOME", tmp_path / "torch"), ("HF_HUB_CACHE", tmp_path / "hf"),
                            ("UNFREEZE_OFFLINE", "1")):
        monkeypatch.setenv(variable, str(value))
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(32), bs=4)
    with pytest.raises(WeightsNotFoundError, match="resnet34") as caught:
        vision_learner(dls, resnet34)
    assert "bundled 'efficientnet_lite0'" in str(caught.value)  # the way to go on offline


@pytest.mark.filterwarnings("ignore::unfreeze.train.lr_find.LRFindWarning")  # a 12-step curve is noisy
def test_lr_find_suggestions_unpack_like_fastai(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=8), item_tfms=Resize(16), bs=4,
                                       seed=0)
    learn = vision_learner(dls, ARCH, pretrained=False, metrics=error_rate, quiet=True)
    result = learn.lr_find(num_it=12)
    lr_min, lr_steep = result.suggest(minimum, steep)

    suggested = result.suggest(minimum, steep)
    assert isinstance(suggested, SuggestedLRs) and suggested._fields == ("minimum", "steep")
    assert (lr_min, lr_steep) == (result.minimum, result.steep)
    assert repr(suggested) == f"SuggestedLRs(minimum={lr_min:.1e}, steep={lr_steep:.1e})"
    assert result.suggest().valley == result.valley


# ---------------------------------------------------------------------------- Learner idioms
# The cells below follow fastai's vision tutorial and the book's chapters 1, 2 and 5 (training,
# saving, exporting, interpreting), on tiny images in a script, where plots go to named files.

@pytest.fixture
def pets_path(make_image_folder, tmp_path, monkeypatch):
    """A train/valid folder of three classes; the current directory is a scratch folder for the plots."""
    path = make_image_folder(classes=("Abyssinian", "Bengal", "beagle"), n_train=8, n_valid=4)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return path


@pytest.mark.filterwarnings("ignore::unfreeze.train.lr_find.LRFindWarning")
def test_seed_workflow_fine_tune_lr_find_unfreeze_and_plot_loss(pets_path, capsys):
    path = pets_path
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4, seed=42)
    learn = cnn_learner(dls, ARCH, metrics=error_rate, pretrained=False)
    learn.fine_tune(1)
    learn.lr_find(num_it=20)
    learn.unfreeze()
    learn.fit_one_cycle(1, lr_max=slice(1e-6, 1e-4))
    learn.recorder.plot_loss()
    learn.recorder.plot_lr_find()

    printed = capsys.readouterr().out
    assert len(learn.recorder.history) == 3 and "error_rate" in printed
    assert Path("loss.png").stat().st_size > 1000 and Path("lr_find.png").stat().st_size > 1000
    assert f"Saved the loss plot to {Path('loss.png').resolve()}" in printed


def test_save_load_export_and_load_learner(pets_path, capsys):
    path = pets_path
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4, seed=42)
    learn = vision_learner(dls, ARCH, metrics=error_rate, pretrained=False)
    learn.fit_one_cycle(1)
    learn.save('stage-1')
    learn = learn.load('stage-1')
    learn.export()
    learn_inf = load_learner(path/'export.pkl', cpu=True)
    pred, pred_idx, probs = learn_inf.predict(get_image_files(path/'valid')[0])

    assert (path/'models'/'stage-1.safetensors').is_file()
    assert (path/'export.unfreeze').is_file() and not (path/'export.pkl').exists()
    assert pred in dls.vocab and dls.vocab[pred_idx] == pred and probs.shape == (3,)
    assert torch_equal(learn_inf.model.state_dict(), learn.model.state_dict())


def torch_equal(first, second):
    return first.keys() == second.keys() and all((first[k].cpu() == second[k].cpu()).all() for k in first)


def test_interpretation_tta_validate_and_summary(pets_path, capsys):
    path = pets_path
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), batch_tfms=aug_transforms(), bs=4, seed=42)
    learn = vision_learner(dls, ARCH, metrics=[error_rate, accuracy], pretrained=False)
    learn.fit_one_cycle(1, 1e-3)

    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(figsize=(6, 6), dpi=60)
    interp.plot_top_losses(4, nrows=2, figsize=(4, 4))
    confused = interp.most_confused(min_val=1)
    interp.print_classification_report()
    preds, targs = learn.tta()
    tta_error = error_rate(preds, targs)
    loss, err = learn.validate()[0], learn.validate()[1]
    learn.summary()
    probs, targets, decoded = learn.get_preds(with_decoded=True)

    printed = capsys.readouterr().out
    assert Path("confusion_matrix.png").is_file() and Path("top_losses.png").is_file()
    assert all(count >= 1 for _, _, count in confused)
    assert "weighted avg" in printed and "Optimizer: AdamW" in printed
    assert 0.0 <= float(tta_error) <= 1.0 and preds.shape == (12, 3) and targs.shape == (12,)
    assert (loss, err) == (learn.validate()["valid_loss"], learn.validate()["error_rate"])
    assert (decoded == probs.argmax(dim=1)).all() and (targets == targs).all()
    assert Interpretation.from_learner(learn).most_confused(min_val=1) == confused


def test_callbacks_cbs_wd_and_fp16_spellings(pets_path):
    path = pets_path
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4, seed=42)
    learn = vision_learner(dls, ARCH, metrics=accuracy, pretrained=False, wd=0.1).to_fp16()
    learn.fit_one_cycle(3, 1e-3, cbs=[SaveModelCallback(monitor='accuracy', fname='best'),
                                      EarlyStoppingCallback(monitor='valid_loss', min_delta=10, patience=1)])
    learn.fine_tune(1, cbs=SaveModelCallback(), wd=0.01)
    learn.to_fp32()
    x, y = dls.one_batch()

    assert len(learn.recorder.history) == 2 + 2  # stopped after 2 epochs, then fine_tune's two
    assert (path/'models'/'best.safetensors').is_file() and (path/'models'/'model.safetensors').is_file()
    assert learn.weight_decay == 0.1
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,) and dls.c == 3
    assert len(dls.train_ds) == 24 and len(dls.valid_ds) == 12


@pytest.mark.slow  # torchvision's resnet18 trains for real: about 10 s on 2 CPU cores
@pytest.mark.filterwarnings("ignore::unfreeze.train.lr_find.LRFindWarning")
def test_seed_workflow_with_torchvision_resnet18(pets_path):
    path = pets_path
    dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(32), bs=8, seed=42)
    learn = cnn_learner(dls, resnet18, metrics=error_rate, pretrained=False)
    learn.fine_tune(1)
    learn.lr_find(num_it=20)
    learn.unfreeze()
    learn.fit_one_cycle(1, lr_max=slice(1e-6, 1e-4))
    learn.recorder.plot_loss()

    assert learn.model.arch == "torchvision:resnet18" and len(learn.recorder.history) == 3
    assert Path("loss.png").is_file()
