# ruff: noqa: F403, F405
"""fastbook chapters 2, 6 and 7 (the data side and the names), ported with only the import changed.

The cells follow the book with fastai's names; the data is small and made at test time, put where
`untar_data` finds fastai's datasets (`$FASTAI_HOME/data/<name>`), and sizes are scaled down so the
cells run on a CPU in seconds. Each snippet uses nothing but `from unfreeze import *`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from unfreeze import *  # the point of these tests

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning",
                                        "ignore::unfreeze.data.DataWarning")

ARCH = "test_resnet"
PASCAL_CLASSES = ("car", "cat", "dog", "person")


@pytest.fixture
def fastai_home(tmp_path, monkeypatch):
    """An empty fastai home; the current directory is a scratch folder for plots and exports."""
    home = tmp_path / "fastai_home"
    monkeypatch.setenv("FASTAI_HOME", str(home))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return home


@pytest.fixture
def pascal(fastai_home, write_image):
    """PASCAL 2007 in miniature: train/*.jpg and train.csv (fname, labels separated by spaces, is_valid)."""
    root = fastai_home / "data" / "pascal_2007"
    lines = ["fname,labels,is_valid"]
    for index in range(24):
        labels = [PASCAL_CLASSES[index % 4]] + ([PASCAL_CLASSES[(index + 1) % 4]] if index % 3 == 0 else [])
        color = (60 * (index % 4), 200 - 40 * (index % 4), 90)
        write_image(root / "train" / f"{index:06d}.jpg", (40, 32), color, seed=index)
        lines.append(f"{index:06d}.jpg,{' '.join(labels)},{index % 4 == 3 and index > 12}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def imagenette(fastai_home, write_image):
    """Imagenette in miniature: train/<wnid>/*.JPEG-like PNGs for three classes."""
    root = fastai_home / "data" / "imagenette2"
    for class_index, wnid in enumerate(("n01440764", "n02102040", "n02979186")):
        for index in range(8):
            write_image(root / "train" / wnid / f"{wnid}_{index}.png", (40, 36),
                        (200 - 80 * class_index, 60 + 70 * class_index, 120), seed=index)
    return root


def test_the_star_import_gives_the_names_notebooks_use_unimported():
    names = ("pd", "np", "torch", "nn", "F", "plt", "partial", "L", "tensor", "to_cpu", "untar_data", "URLs")
    assert all(name in globals() for name in names)
    assert pd.DataFrame({"a": [1, 2]})["a"].sum() == 3 and F.relu(tensor([-1.0, 2.0])).tolist() == [0.0, 2.0]
    assert L(1, 2, 3).map(lambda x: x * 2) == [2, 4, 6] and partial(max, 3)(5) == 5
    x, y = to_cpu((torch.zeros(2), torch.ones(2)))
    assert x.device.type == y.device.type == "cpu" and isinstance(nn.Linear(2, 2), nn.Module)


def test_import_unfreeze_alone_loads_neither_pandas_nor_pyplot():
    loaded = "print(sorted(m for m in ('pandas', 'matplotlib', 'fastcore') if m in sys.modules))"
    probe = f"import sys, unfreeze; {loaded}; from unfreeze import *; {loaded}"
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[:2] == ["[]", "['fastcore', 'matplotlib', 'pandas']"]


def test_untar_data_says_where_to_put_a_missing_dataset(fastai_home):
    with pytest.raises(DataError) as caught:
        untar_data(URLs.PETS)
    message = str(caught.value)
    assert "\n" not in message and str(fastai_home / "data" / "oxford-iiit-pet") in message
    assert str(fastai_home / "archive" / "oxford-iiit-pet.tgz") in message and URLs.PETS in message


def test_untar_data_extracts_an_archive_from_fastais_cache(fastai_home, tmp_path, write_image):
    import tarfile

    write_image(tmp_path / "packed" / "oxford-iiit-pet" / "images" / "Abyssinian_1.png")
    (fastai_home / "archive").mkdir(parents=True)
    with tarfile.open(fastai_home / "archive" / "oxford-iiit-pet.tgz", "w:gz") as archive:
        archive.add(tmp_path / "packed" / "oxford-iiit-pet", arcname="oxford-iiit-pet")

    path = untar_data(URLs.PETS)
    assert path == fastai_home / "data" / "oxford-iiit-pet"
    assert path.ls() == [path/'images'] and (path/'images').ls()[0].name == "Abyssinian_1.png"
    assert untar_data(URLs.PETS) == path  # the second call finds the extracted folder


# ---------------------------------------------------------------------------- chapter 2: bears

def test_bears_random_resized_crop_alone_export_and_load_learner_in_the_current_folder(fastai_home, tmp_path,
                                                                                     make_image_folder):
    path = make_image_folder(classes=("black", "grizzly", "teddy"), flat=True, n_train=5, n_valid=2)
    bears = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label,
                      item_tfms=RandomResizedCrop(16, min_scale=0.5))
    dls = bears.dataloaders(path, bs=4)
    dls.train.show_batch(max_n=4, nrows=1, unique=True)
    learn = vision_learner(dls, ARCH, pretrained=False, metrics=error_rate)
    learn.fine_tune(1)
    learn.export()
    path = Path()
    exported = path.ls(file_exts='.unfreeze')
    learn_inf = load_learner(path/'export.pkl')
    img = PILImage.create(get_image_files(tmp_path / "images")[0])
    pred, pred_idx, probs = learn_inf.predict(img)

    assert dls.path == Path('.') and exported == [Path('export.unfreeze')]
    assert pred in dls.vocab and dls.vocab[pred_idx] == pred and probs.shape == (3,)
    assert Path('batch.png').stat().st_size > 1000


def test_aug_transforms_without_lighting_trains(make_image_folder, fastai_home):
    dls = ImageDataLoaders.from_folder(make_image_folder(), item_tfms=Resize(24),
                                       batch_tfms=aug_transforms(size=16, max_lighting=0.0), bs=4, seed=0)
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,) and dls.train.augment.max_lighting == 0.0


# ---------------------------------------------------------------------------- chapter 6: multi-label

def test_chapter_6_pascal_datablock_from_a_dataframe(pascal):
    path = untar_data(URLs.PASCAL_2007)
    df = pd.read_csv(path/'train.csv')

    def get_x(r): return path/'train'/r['fname']
    def get_y(r): return r['labels'].split(' ')

    def splitter(df):
        train = df.index[~df['is_valid']].tolist()
        valid = df.index[df['is_valid']].tolist()
        return train, valid

    dblock = DataBlock(blocks=(ImageBlock, MultiCategoryBlock),
                       splitter=splitter,
                       get_x=get_x,
                       get_y=get_y,
                       item_tfms=RandomResizedCrop(32, min_scale=0.35))
    dls = dblock.dataloaders(df, bs=4)
    dls.show_batch(nrows=1, ncols=3)
    learn = cnn_learner(dls, ARCH, pretrained=False)
    x, y = to_cpu(dls.train.one_batch())
    activs = learn.model(x)
    loss_func = nn.BCEWithLogitsLoss()
    loss = loss_func(activs, y)

    assert path == pascal and dls.path == Path('.')
    assert dls.vocab == list(PASCAL_CLASSES) and isinstance(dls.task, MultiLabel)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (21, 3)
    assert activs.shape == (4, 4) and y.shape == (4, 4) and set(y.unique().tolist()) <= {0.0, 1.0}
    assert loss.item() > 0 and Path('batch.png').is_file()
    idxs = torch.where(dls.train_ds[0][1] == 1.)[0]
    assert [dls.vocab[i] for i in idxs] == ["car", "cat"]  # row 0: "car cat"


def test_chapter_6_threshold_partials_train_and_are_named_after_the_function(pascal, capsys):
    path = untar_data(URLs.PASCAL_2007)
    dls = ImageDataLoaders.from_csv(path, 'train.csv', folder='train', label_delim=' ', valid_col='is_valid',
                                    item_tfms=Resize(32), bs=4, seed=0)
    with pytest.raises(TypeError, match=r"partial\(accuracy_multi, thres=0.2\).*unexpected keyword"):
        cnn_learner(dls, ARCH, pretrained=False, metrics=partial(accuracy_multi, thres=0.2))
    learn = cnn_learner(dls, ARCH, pretrained=False, metrics=partial(accuracy_multi, thresh=0.2))
    learn.fine_tune(1, base_lr=3e-3, freeze_epochs=1)
    preds, targs = learn.get_preds()
    xs = torch.linspace(0.05, 0.95, 29)
    accs = [accuracy_multi(preds, targs, thresh=i, sigmoid=False) for i in xs]
    plt.plot(xs, accs)
    plt.close()

    assert learn.metric_names == ["accuracy_multi"] and "accuracy_multi" in capsys.readouterr().out
    assert "accuracy_multi" in learn.recorder.history[-1]
    assert accs[0].item() == accuracy_multi(preds, targs, threshold=0.05, sigmoid=False)
    assert accs[-1] == float(((preds >= 0.95) == targs.bool()).float().mean())


def test_chapter_6_from_df_and_from_csv_read_the_same_items(pascal):
    path = untar_data(URLs.PASCAL_2007)
    df = pd.read_csv(path/'train.csv')
    from_df = ImageDataLoaders.from_df(df, path, folder='train', label_delim=' ', valid_col='is_valid',
                                       item_tfms=Resize(32), bs=4)
    from_csv = ImageDataLoaders.from_csv(path, 'train.csv', folder='train', label_delim=' ', valid_col='is_valid',
                                         item_tfms=Resize(32), bs=4)
    shortened = df.assign(fname=df['fname'].str.replace('.jpg', ''))
    with_suffix = ImageDataLoaders.from_df(shortened, path, folder='train', suff='.jpg', label_delim=' ',
                                           valid_col='is_valid', item_tfms=Resize(32), bs=4)

    assert from_df.valid_ds.items == from_csv.valid_ds.items == with_suffix.valid_ds.items
    assert from_df.train_ds.items[0] == (path/'train'/'000000.jpg', ("car", "cat"))
    assert from_df.vocab == list(PASCAL_CLASSES) and from_df.path == path


# ---------------------------------------------------------------------------- chapter 7: training a model from scratch

def test_chapter_7_normalize_from_stats_normalizes_one_batch(imagenette):
    path = untar_data(URLs.IMAGENETTE)

    def get_dls(bs, size, normalize=True):
        dblock = DataBlock(blocks=(ImageBlock(), CategoryBlock()),
                           get_items=get_image_files,
                           get_y=parent_label,
                           splitter=RandomSplitter(seed=42),
                           item_tfms=Resize(48),
                           batch_tfms=[*aug_transforms(size=size, min_scale=0.75),
                                       *([Normalize.from_stats(*imagenet_stats)] if normalize else [])])
        return dblock.dataloaders(path, bs=bs)

    plain, _ = get_dls(8, 32, normalize=False).one_batch()
    x, _ = get_dls(8, 32).one_batch()
    mean, std = (tensor(stats).view(1, 3, 1, 1) for stats in imagenet_stats)

    assert x.shape == (8, 3, 32, 32) and plain.min() >= 0 and x.min() < 0
    assert torch.allclose(x, (plain - mean) / std, atol=1e-5)
    assert x.mean(dim=[0, 2, 3]).shape == (3,)


def test_chapter_7_xresnet50_learner_with_fastai_losses_tta_and_item(imagenette):
    path = untar_data(URLs.IMAGENETTE)
    dblock = DataBlock(blocks=(ImageBlock(), CategoryBlock()),
                       get_items=get_image_files,
                       get_y=parent_label,
                       item_tfms=Resize(48),
                       batch_tfms=aug_transforms(size=32, min_scale=0.75))
    dls = dblock.dataloaders(path, bs=8)
    model = xresnet50(n_out=dls.c)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.fit_one_cycle(1, 3e-3)
    preds, targs = learn.tta()
    tta_accuracy = accuracy(preds, targs).item()
    learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=LabelSmoothingCrossEntropy(), metrics=accuracy)
    learn.fit_one_cycle(1, 3e-3)

    assert model.arch == "resnet50d" and model.n_out == 3 and model.weights_source == "random"
    assert isinstance(tta_accuracy, float) and 0.0 <= tta_accuracy <= 1.0
    assert preds.shape == (len(dls.valid_ds), 3)
    assert len(learn.recorder.history) == 1 and math_isfinite(learn.recorder.history[-1]["valid_loss"])


def math_isfinite(value):
    return value == value and abs(value) != float("inf")


# ---------------------------------------------------------------------------- part 2: the learner side

def imagenette_dls(path, bs, size):
    """Chapter 7's `get_dls`, scaled down: Imagenette at `size`, normalised with ImageNet's statistics."""
    dblock = DataBlock(blocks=(ImageBlock(), CategoryBlock()),
                       get_items=get_image_files,
                       get_y=parent_label,
                       splitter=RandomSplitter(seed=42),
                       item_tfms=Resize(48),
                       batch_tfms=[*aug_transforms(size=size, min_scale=0.75),
                                   Normalize.from_stats(*imagenet_stats)])
    return dblock.dataloaders(path, bs=bs)


def test_chapter_7_learner_on_a_torchvision_resnet_trains_every_layer_as_one_group(imagenette, capsys):
    import torchvision

    dls = imagenette_dls(untar_data(URLs.IMAGENETTE), 8, 32)
    model = torchvision.models.resnet18(num_classes=dls.c)
    first_conv = model.conv1.weight.detach().clone()
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.freeze()
    learn.fit_one_cycle(1, 3e-3)

    assert learn.model is model and learn.n_groups == 1 and learn.frozen_to == 0
    assert all(p.requires_grad for p in model.parameters())
    assert not torch.equal(first_conv, model.conv1.weight.detach().cpu())  # the first layer trained too
    assert "nothing to freeze" in capsys.readouterr().out
    assert "\nall " in learn.summary() and "\nhead " not in learn.summary()  # one group of every layer
    assert len(learn.recorder.history) == 1 and "accuracy" in learn.recorder.history[-1]
    assert dls.valid.mean == pytest.approx(imagenet_stats[0])  # the data's own Normalize, as fastai's plain Learner
    with pytest.raises(ExportError, match=r"your own ResNet module.*learn\.save\('name'\)"):
        learn.export()


def test_chapter_7_plain_sequential_without_normalize_sees_the_unnormalised_batch(imagenette):
    path = untar_data(URLs.IMAGENETTE)
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                    splitter=RandomSplitter(seed=42), item_tfms=Resize(16)).dataloaders(path, bs=8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, dls.c))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=[accuracy, error_rate])
    learn.fit(1, 1e-2)
    x, _ = dls.one_batch()

    assert x.min() >= 0 and x.max() <= 1  # no statistics of its own: the data stays as its batch_tfms make it
    assert learn.validate()[1].item() == pytest.approx(1 - learn.validate()[2].item())


def test_chapter_7_progressive_resizing_swaps_the_loaders(imagenette):
    path = untar_data(URLs.IMAGENETTE)
    dls = imagenette_dls(path, 8, 16)
    learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.fit_one_cycle(1, 3e-3)
    learn.dls = imagenette_dls(path, 8, 32)
    learn.fine_tune(1, 1e-3)
    x, _ = learn.dls.one_batch()

    assert x.shape[-1] == 32 and x.device == learn.device and learn.dls.train.device == learn.device
    assert learn.dls.valid.mean == learn.model.mean  # the model's statistics applied to the new loaders
    assert len(learn.recorder.history) == 3 and learn.dls.size == 32
    with pytest.raises(ValueError, match="classes"):
        learn.dls = _two_class_dls(path)


def _two_class_dls(path):
    """Loaders over two of Imagenette's three classes: a swap the model's head does not fit."""
    def two_classes(folder):
        return [file for file in get_image_files(folder) if file.parent.name != "n02979186"]

    return DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=two_classes, get_y=parent_label,
                     splitter=RandomSplitter(seed=42), item_tfms=Resize(16)).dataloaders(path, bs=4)


def test_chapter_7_tta_use_max(imagenette):
    dls = imagenette_dls(untar_data(URLs.IMAGENETTE), 8, 32)
    learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=CrossEntropyLossFlat(), metrics=accuracy, seed=0)
    learn.fit_one_cycle(1, 3e-3)
    preds, targs = learn.tta(use_max=True)
    (augmented, plain), _ = learn.tta(beta=None)

    assert accuracy(preds, targs).item() == pytest.approx(float((preds.argmax(1) == targs).float().mean()))
    assert torch.all(preds >= torch.lerp(augmented, plain, 0.25) - 1e-6)  # the max is never below the mean


def test_chapter_6_metrics_assigned_after_the_build_show_their_column(pascal, capsys):
    path = untar_data(URLs.PASCAL_2007)
    dls = ImageDataLoaders.from_csv(path, 'train.csv', folder='train', label_delim=' ', valid_col='is_valid',
                                    item_tfms=Resize(32), bs=4, seed=0)
    learn = cnn_learner(dls, ARCH, pretrained=False)
    with pytest.raises(TypeError, match=r"thres=0\.5"):
        learn.metrics = partial(accuracy_multi, thres=0.5)
    learn.metrics = partial(accuracy_multi, thresh=0.2)
    learn.fit_one_cycle(1, 1e-3)
    labels, mask, probs = learn.predict(path/'train'/'000000.jpg')
    results = learn.validate()
    preds, targs = learn.get_preds()
    learn.metrics = partial(accuracy_multi, thresh=0.1)
    low = learn.validate()
    learn.metrics = partial(accuracy_multi, thresh=0.99)
    high = learn.validate()

    assert learn.metric_names == ["accuracy_multi"] and "accuracy_multi" in capsys.readouterr().out
    assert "accuracy_multi" in learn.recorder.history[-1]
    assert isinstance(labels, MultiCategory) and isinstance(labels, list)
    assert list(labels) == [dls.vocab[i] for i in torch.where(mask)[0]]
    assert mask.dtype == torch.bool and mask.shape == probs.shape == (4,)
    assert isinstance(results[1].item(), float) and results[1] == results["accuracy_multi"]
    assert low[1].item() == pytest.approx(accuracy_multi(preds, targs, thresh=0.1, sigmoid=False))
    assert high[1].item() == pytest.approx(accuracy_multi(preds, targs, thresh=0.99, sigmoid=False))
    assert low[0] == high[0] == results[0]  # the loss does not depend on the metric's threshold


def test_show_results_saves_a_titled_grid_in_a_script(pascal, capsys):
    path = untar_data(URLs.PASCAL_2007)
    dls = ImageDataLoaders.from_csv(path, 'train.csv', folder='train', label_delim=' ', valid_col='is_valid',
                                    item_tfms=Resize(32), bs=4, seed=0)
    learn = cnn_learner(dls, ARCH, pretrained=False, metrics=partial(accuracy_multi, thresh=0.2))
    learn.show_results(max_n=9)

    assert Path('results.png').stat().st_size > 1000 and "results.png" in capsys.readouterr().out


def test_lr_find_result_shows_a_short_repr(imagenette):
    dls = imagenette_dls(untar_data(URLs.IMAGENETTE), 8, 16)
    learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    result = learn.lr_find(num_it=20, show_plot=False)

    assert repr(result) == f"SuggestedLRs(valley={result.valley:.1e})" and len(result.lrs) > 5


def test_chapter_7_mixup_and_cutmix_callbacks(imagenette):
    dls = imagenette_dls(untar_data(URLs.IMAGENETTE), 8, 32)
    model = xresnet50(n_out=dls.c)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=MixUp())
    learn.fit_one_cycle(1, 3e-3)
    learn = Learner(dls, xresnet50(n_out=dls.c), loss_func=LabelSmoothingCrossEntropy(), metrics=accuracy)
    learn.fit_one_cycle(1, 3e-3, cbs=CutMix(alpha=1.0))

    assert math_isfinite(learn.recorder.history[-1]["valid_loss"]) and len(learn.recorder.history) == 1
    assert MixUp().mixup_alpha == 0.4 and MixUp(alpha=0.2).alpha == 0.2 and CutMix().cutmix_alpha == 1.0
    with pytest.raises(ValueError, match=r"MixUp\(alpha=...\) needs a number > 0"):
        MixUp(alpha=0)
