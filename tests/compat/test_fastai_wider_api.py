# ruff: noqa: F403, F405
"""fastai's documented vision API beyond the seed workflow, cell by cell with only the import changed.

Metric classes, optimizers, schedules, callbacks, inference and data factories, on tiny images made at
test time and a random tiny backbone; each cell uses nothing but `from unfreeze import *`.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys

import pytest
from sklearn import metrics as skm

from unfreeze import *  # the point of these tests

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning",
                                        "ignore::unfreeze.data.DataWarning")

ARCH = "test_resnet"


@pytest.fixture
def path(make_image_folder, tmp_path, monkeypatch):
    """Three classes in train/valid folders; the current directory is a scratch folder for plots."""
    folder = make_image_folder(classes=("ant", "bee", "cat"), n_train=6, n_valid=4)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return folder


def _dls(path, **options):
    return ImageDataLoaders.from_folder(path, item_tfms=Resize(16), bs=4, seed=0, **options)


def test_metric_classes_score_the_whole_validation_set_and_fill_the_recorder(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False, seed=0,
                           metrics=[accuracy, F1Score(average='macro'), Precision(average='micro'),
                                    Recall(average='weighted'), RocAuc(), BalancedAccuracy()])
    learn.fit_one_cycle(1, 1e-3)
    preds, targs = learn.get_preds()
    predicted = preds.argmax(-1).numpy()

    assert learn.recorder.metric_names == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'f1_score',
                                           'precision_score', 'recall_score', 'roc_auc_score',
                                           'balanced_accuracy_score', 'time']
    values = learn.recorder.values[-1]
    assert len(learn.recorder.values) == 1 and len(values) == 8  # train_loss, valid_loss, 6 metrics
    expected = [skm.accuracy_score(targs, predicted),
                skm.f1_score(targs, predicted, average='macro', zero_division=0),
                skm.precision_score(targs, predicted, average='micro', zero_division=0),
                skm.recall_score(targs, predicted, average='weighted', zero_division=0),
                skm.roc_auc_score(targs, preds.numpy(), multi_class='ovr'),
                skm.balanced_accuracy_score(targs, predicted)]
    assert values[2:] == pytest.approx(expected, abs=1e-6)


def test_vision_learner_takes_fastais_head_options(path, tmp_path):
    """fastai's vision_learner(dls, arch, ps=0.25, lin_ftrs=[64], concat_pool=False, normalize=False) was a
    TypeError; the head follows fastai's create_head, and an export rebuilds it."""
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False, seed=0, ps=0.25, lin_ftrs=[64], concat_pool=False,
                           normalize=False)
    head = learn.model.head
    assert isinstance(head[0], nn.AdaptiveAvgPool2d)
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.125, 0.25]
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [64, 3]
    assert learn.dls.train.mean == (0.0, 0.0, 0.0) and learn.dls.train.std == (1.0, 1.0, 1.0)
    learn.export(tmp_path / "head.unfreeze")
    loaded = load_learner(tmp_path / "head.unfreeze")
    assert str(loaded.model.head) == str(head)
    custom = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(3))
    assert vision_learner(dls, ARCH, pretrained=False, custom_head=custom).model.head is custom


@pytest.mark.parametrize(("options", "match"), [
    ({"n_in": 1}, "always give 3 channels"), ({"ps": [0.1, 0.2]}, "single number"),
    ({"custom_head": nn.Identity(), "lin_ftrs": [8]}, "custom_head= replaces"),
    ({"custom_head": nn.Identity(), "head": "linear"}, "pass only one"),
])
def test_vision_learner_refuses_head_options_it_cannot_honour(path, options, match):
    with pytest.raises(ValueError, match=match):
        vision_learner(_dls(path), ARCH, pretrained=False, **options)


@pytest.mark.parametrize(("opt_func", "optimizer_class"), [("Adam", "AdamW"), ("SGD", "SGD"), ("ranger", "Lookahead")])
def test_opt_func_picks_fastais_optimizers(path, opt_func, optimizer_class):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False, opt_func=globals()[opt_func])
    learn.fit(1, 1e-3)

    assert optimizer_class in [cls.__name__ for cls in type(learn.optimizer).__mro__]
    if opt_func == 'ranger':  # RAdam inside Lookahead, with fastai's ranger defaults
        assert type(learn.optimizer._base_optimizer).__name__ == 'RAdam'  # timm's Lookahead keeps it there
        group = learn.optimizer.param_groups[0]
        assert group['betas'][1] == 0.99 and group['eps'] == 1e-6 and group['decoupled_weight_decay']
        assert group['lookahead_k'] == 6 and group['lookahead_alpha'] == 0.5
    assert math.isfinite(learn.recorder.history[-1]['valid_loss'])


def test_sgd_weight_decay_is_decoupled_as_fastais(path):
    # fastai's SGD(decouple_wd=True): p <- p * (1 - lr * wd), then the momentum step on the plain gradient
    # (the first step's momentum buffer is the gradient itself). torch's L2 weight_decay would give
    # p - lr * (grad + wd * p) and carry wd * p into the momentum.
    learn = vision_learner(_dls(path), ARCH, pretrained=False, opt_func=SGD, wd=0.1)
    optimizer = learn.ensure_optimizer()
    lr = 0.5
    decayed = [(group, param) for group in optimizer.param_groups for param in group['params']
               if group['weight_decay'] and param.requires_grad]
    assert decayed and all(group['weight_decay'] == 0.1 for group, _ in decayed)
    before = []
    for group, param in decayed:
        group['lr'] = lr
        param.grad = torch.full_like(param, 0.3)
        before.append(param.detach().clone())
    optimizer.step()
    optimizer.step()  # the second step: momentum 0.9 on the plain gradient
    for (group, param), start in zip(decayed, before, strict=True):
        once = start * (1 - lr * 0.1) - lr * 0.3
        expected = once * (1 - lr * 0.1) - lr * (0.9 * 0.3 + 0.3)
        assert torch.allclose(param, expected, atol=1e-6)
        assert group['weight_decay'] == 0.1  # kept for the next step


def test_opt_func_mistakes_say_what_to_do(path):
    dls = _dls(path)
    with pytest.raises(TypeError, match=r"pass opt_func=Adam \(not Adam\(\.\.\.\)\)"):
        Adam([], lr=1e-3)
    with pytest.raises(ValueError, match="opt_func takes Adam, SGD or ranger"):
        vision_learner(dls, ARCH, pretrained=False, opt_func=torch.optim.Adagrad)


def test_fit_flat_cos_and_fit_sgdr_run_fastais_schedules(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False)
    learn.fit_flat_cos(2, lr=1e-3)
    steps = 2 * len(dls.train)
    head_lrs = [lrs[-1] for lrs in learn.recorder.lrs]
    assert head_lrs[: int(0.75 * steps)] == pytest.approx([1e-3] * int(0.75 * steps))
    assert head_lrs[-1] < 1e-3 and learn.recorder.moms[-1] == 0.9

    learn.fit_sgdr(2, 1, lr_max=1e-3)  # cycles of 1 and 2 epochs: 3 epochs, 2 warm restarts
    sgdr = [lrs[-1] for lrs in learn.recorder.lrs[steps:]]
    per_epoch = len(dls.train)
    assert len(learn.recorder.history) == 5 and len(sgdr) == 3 * per_epoch
    assert sgdr[0] == pytest.approx(1e-3) and sgdr[per_epoch] == pytest.approx(1e-3)
    assert sgdr[per_epoch - 1] < 1e-3 and sgdr[-1] < sgdr[per_epoch + 1]


def test_no_bar_set_seed_and_show_graph(path, capsys):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False)
    with learn.no_bar():
        learn.fit(1)
    assert capsys.readouterr().out == "" and not learn.quiet
    learn.fit(1, cbs=ShowGraphCallback())
    assert Path('loss.png').stat().st_size > 1000 and "loss.png" in capsys.readouterr().out
    set_seed(42)
    first = torch.randn(3)
    set_seed(42)
    assert torch.equal(first, torch.randn(3))


def test_csv_logger_writes_under_learn_path(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False, cbs=CSVLogger())
    learn.fit(1)
    assert learn.path == path
    assert (path / 'history.csv').read_text().splitlines()[0].startswith('epoch,train_loss,valid_loss')
    assert not Path('history.csv').exists()


def test_gradient_accumulation_names_grad_accum():
    with pytest.raises(TypeError, match="grad_accum=") as caught:
        GradientAccumulation(n_acc=64)
    assert "\n" not in str(caught.value)


def test_inference_cells_test_dl_with_labels_get_preds_train_and_predict_bytes(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False)
    files = get_image_files(path / 'valid')
    test_dl = dls.test_dl(files, with_labels=True)
    _, targs = learn.get_preds(dl=test_dl)
    train_preds, train_targs = learn.get_preds(ds_idx=0)
    label, _, probs = learn.predict(files[0].read_bytes())
    interp = ClassificationInterpretation.from_learner(learn)
    saved = interp.plot_confusion_matrix(title='Bees and ants')

    assert targs.tolist() == [dls.vocab.index(f.parent.name) for f in files]
    assert learn.validate(dl=test_dl)[0] == pytest.approx(learn.validate()[0], rel=1e-5)
    assert train_preds.shape == (len(dls.train_ds), 3) and sorted(train_targs.tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    assert label == learn.predict(files[0])[0] and torch.allclose(probs, learn.predict(files[0])[2])
    assert saved.stat().st_size > 1000
    with pytest.raises(DataError, match="not an image file"):
        learn.predict(b"not an image")


def test_data_factories_from_lists_path_func_path_re_and_bs(path):
    files = get_image_files(path)
    by_path = ImageDataLoaders.from_path_func(path, files, lambda p: p.parent.name, valid_pct=0.25, seed=1,
                                              item_tfms=Resize(16), bs=4)
    by_re = ImageDataLoaders.from_path_re(path, files, r'/([a-z]+)/[a-z]+_\d+\.png$', valid_pct=0.25, seed=1,
                                          item_tfms=Resize(16), bs=4)
    by_lists = ImageDataLoaders.from_lists(path, [f.relative_to(path) for f in files], [f.parent.name for f in files],
                                           valid_pct=0.25, seed=1, item_tfms=Resize(16), bs=4)

    assert by_path.vocab == by_re.vocab == by_lists.vocab == ['ant', 'bee', 'cat']
    assert by_path.valid_ds.items == by_re.valid_ds.items == by_lists.valid_ds.items
    assert len(by_path.valid_ds) == int(0.25 * len(files)) and by_path.bs == 4
    labelled = by_path.test_dl(files[:2], with_labels=True)
    assert labelled.dataset.items[0][1] == files[0].parent.name
    with pytest.raises(DataError, match="pass labels="):
        by_lists.test_dl(files[:2], with_labels=True)
    with pytest.raises(TypeError, match="Unknown option"):
        ImageDataLoaders.from_path_func(path, files, parent_label, item_tfm=Resize(16))


def test_splitters_summary_and_grayscale_images(path, capsys):
    files = get_image_files(path)
    block = DataBlock(blocks=(ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                      get_y=parent_label, splitter=FuncSplitter(lambda o: o.parent.parent.name == 'valid'),
                      item_tfms=Resize(16))
    block.summary(path, bs=4)
    dls = block.dataloaders(path, bs=4)
    by_index = DataBlock(get_items=get_image_files, get_y=parent_label, splitter=IndexSplitter([0, 1]),
                         item_tfms=Resize(16)).dataloaders(path, bs=4)
    image = PILImageBW.create(files[0])

    printed = capsys.readouterr().out
    assert "18 train, 12 valid by" in printed and "batches of 4 images" in printed
    assert len(dls.valid_ds) == 12 and {p.parent.parent.name for p, _ in dls.valid_ds.items} == {'valid'}
    assert [p for p, _ in by_index.valid_ds.items] == files[:2]
    assert image.mode == 'L'
    learn = vision_learner(dls, ARCH, pretrained=False)
    assert learn.predict(image)[0] in dls.vocab


@pytest.mark.parametrize("seed", [42, 0])
def test_random_splitter_seed_matches_fastai_in_a_notebook(path, seed):
    files = get_image_files(path)
    torch.manual_seed(seed)
    permutation = L(list(torch.randperm(len(files)).numpy()))
    cut = int(0.2 * len(files))
    train, valid = RandomSplitter(valid_pct=0.2, seed=seed)(files)
    assert list(train) == list(permutation[cut:]) and list(valid) == list(permutation[:cut])


def test_star_import_of_a_missing_fastai_name_fails_in_one_line():
    probe = ("from unfreeze import *\n"
             "for cell in ('unet_learner(None, resnet34)', 'TextDataLoaders.from_folder(path)', 'RAdam',\n"
             "             'DataBlock(blocks=(ImageBlock, MaskBlock), get_y=parent_label)'):\n"
             "    try:\n"
             "        eval(cell)(1) if cell == 'RAdam' else eval(cell)\n"
             "    except Exception as e:\n"
             "        print(type(e).__name__, '|', e)\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("NotImplementedError | fastai's unet_learner is not in unfreeze: unfreeze trains image")
    assert "TextDataLoaders is not in unfreeze" in lines[1] and "text models are not supported" in lines[1]
    assert "opt_func=Adam, SGD or ranger (optimizer='adamw', 'sgd' or 'ranger')" in lines[2]
    assert lines[3].startswith("ValueError") and "got MaskBlock" in lines[3]


def test_fastai_attributes_name_unfreezes_spelling(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False)
    cells = {"learn.opt": "learn.optimizer", "learn.no_logging()": "quiet=True",
             "learn.recorder.final_record": "recorder.history[-1]", "dls.cuda()": "dls.to('cuda')",
             "learn.set_seed": "Learner(seed=...)"}
    for cell, spelling in cells.items():
        with pytest.raises(AttributeError, match="is fastai's; unfreeze spells it") as caught:
            eval(cell)
        assert spelling in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(AttributeError, match="'Learner' object has no attribute 'no_such_thing'"):
        _ = learn.no_such_thing
    assert not hasattr(learn, "xb") and getattr(dls, "missing", None) is None


def test_io_bytes_of_an_upload_predict_like_a_path(path):
    dls = _dls(path)
    learn = vision_learner(dls, ARCH, pretrained=False)
    file = get_image_files(path / 'valid')[0]
    upload = io.BytesIO(file.read_bytes()).getvalue()
    assert learn.predict(upload)[1] == learn.predict(file)[1]


def test_datasets_and_tfmdlists_basics(path):
    files = get_image_files(path)
    splits = RandomSplitter(seed=42)(files)
    tfms = [[PILImage.create], [parent_label, Categorize]]
    dsets = Datasets(files, tfms, splits=splits)
    x, y = dsets.valid[0]
    tls = TfmdLists(files, [PILImage.create], splits=splits)
    dls = dsets.dataloaders(bs=4, after_item=[Resize(16), ToTensor],
                            after_batch=[IntToFloatTensor, *aug_transforms(max_warp=0)])
    xb, _ = dls.one_batch()

    assert x.size == (24, 20) and dsets.vocab == ['ant', 'bee', 'cat']
    assert dsets.vocab[int(y)] == files[splits[1][0]].parent.name
    assert len(dsets.train) == len(files) - int(0.2 * len(files)) and len(tls.valid) == int(0.2 * len(files))
    assert tls.train[0].size == (24, 20)
    assert dls.vocab == dsets.vocab and xb.shape == (4, 3, 16, 16)
    assert [str(p) for p, _ in dls.valid_ds.items] == [str(files[i]) for i in splits[1]]
    with pytest.raises(DataError, match="Categorize"):
        Datasets(files, [[PILImage.create], [parent_label]], splits=splits).dataloaders(bs=4)


def test_an_export_that_is_refused_does_not_say_where_it_was_written(path, capsys):
    """export('p.pkl') of a plain nn.Module printed 'exported to p.unfreeze' before refusing to export it."""
    learn = Learner(_dls(path), nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3)), metrics=accuracy)
    with pytest.raises(ValueError, match='cannot rebuild'):  # ExportError: weights only, save() them
        learn.export('p.pkl')
    assert 'exported to' not in capsys.readouterr().out and not (path / 'p.unfreeze').exists()
    learn = vision_learner(_dls(path), ARCH, pretrained=False, seed=0)
    learn.export('p.pkl')
    assert 'exported to' in capsys.readouterr().out and (path / 'p.unfreeze').is_file()


def test_factories_and_datablock_take_fastais_val_bs_and_shuffle(path):
    files = get_image_files(path)
    built = [_dls(path, val_bs=3, shuffle=False),
             ImageDataLoaders.from_name_re(path, files, r'([a-z]+)_\d+\.png$', valid_pct=0.25, seed=1,
                                           item_tfms=Resize(16), bs=4, val_bs=3, shuffle=False),
             ImageDataLoaders.from_path_func(path, files, parent_label, valid_pct=0.25, seed=1, item_tfms=Resize(16),
                                             bs=4, val_bs=3, shuffle=False),
             DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                       splitter=GrandparentSplitter(), item_tfms=Resize(16)).dataloaders(path, bs=4, val_bs=3,
                                                                                         shuffle=False)]
    for dls in built:
        # fastai: val_bs sizes the validation batches; shuffle=False keeps the training items in order,
        # every one of them (drop_last follows shuffle).
        assert (dls.bs, dls.valid.batch_size) == (4, 3)
        assert torch.equal(dls.one_batch()[1], dls.train_ds.targets[:4])
        assert len(dls.train) == -(-len(dls.train_ds) // 4)
    assert _dls(path).train.shuffle and _dls(path).valid.batch_size == 4


def test_tta_takes_fastais_ds_idx(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    preds, targs = learn.tta(ds_idx=0, n=1)
    positional, _ = learn.tta(0, n=1)  # fastai's first positional argument is ds_idx

    # fastai: ds_idx=0 is the training set, in order; unfreeze's ds_idx=0 loader (see get_preds) is the same.
    assert preds.shape == (len(learn.dls.train_ds), 3) and torch.equal(targs, learn.get_preds(ds_idx=0)[1])
    assert torch.allclose(positional, preds)
    assert learn.tta(ds_idx=1, n=1)[0].shape == (len(learn.dls.valid_ds), 3)


def test_get_preds_takes_fastais_act(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    probs, targs = learn.get_preds()
    logits, act_targs, decoded = learn.get_preds(act=lambda outputs: outputs, with_decoded=True)

    # fastai: act replaces the loss's activation (softmax), so an identity gives the model's raw outputs.
    assert torch.allclose(torch.softmax(logits, dim=1), probs, atol=1e-6) and torch.equal(targs, act_targs)
    assert torch.equal(decoded, probs.argmax(dim=1))


def test_predict_returns_the_class_index_as_fastais_tensor(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    label, index, probs = learn.predict(get_image_files(path / 'valid')[0])

    # fastai: pred_idx is a 0-d long tensor, so pred_idx.item() and probs[pred_idx] both work.
    assert isinstance(index, torch.Tensor) and index.shape == () and index.dtype == torch.long
    assert learn.dls.vocab[index.item()] == learn.dls.vocab[index] == label
    assert probs[index] == probs.max()


def test_each_loader_has_fastais_bs(path):
    dls = _dls(path, val_bs=3)
    assert (dls.train.bs, dls.valid.bs, dls.test_dl(get_image_files(path)[:5], bs=2).bs) == (4, 3, 2)


def test_top_losses_items_gives_the_image_files_as_fastais(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    interp = ClassificationInterpretation.from_learner(learn)
    losses, indices, items = interp.top_losses(3, items=True)

    # fastai: items=True adds the loader's items (here the image files) of the top losses.
    assert torch.equal(losses, interp.top_losses(3)[0]) and len(items) == 3
    assert items == [learn.dls.valid_ds.items[i][0] for i in indices.tolist()] and all(f.is_file() for f in items)


def test_get_preds_with_input_puts_the_batches_first_as_fastais(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    inputs, probs, targs, decoded = learn.get_preds(with_input=True, with_decoded=True)

    # fastai: (inputs, preds, targs, decoded): the images as the model saw them, in the loader's order.
    assert inputs.shape == (len(learn.dls.valid_ds), 3, 16, 16) and torch.equal(targs, learn.get_preds()[1])
    with torch.no_grad():
        learn.model.eval()
        assert torch.allclose(learn.model(inputs.to(learn.dls.device)).softmax(dim=1).cpu(), probs, atol=1e-5)
    assert torch.equal(decoded, probs.argmax(dim=1))


@pytest.mark.parametrize("name", ["TrainTestSplitter", "EndSplitter", "MaskSplitter", "FileSplitter"])
def test_fastais_other_splitters_fail_in_one_line_naming_the_ones_to_use(name):
    # README: a fastai name unfreeze does not copy is a stand-in after the star import, not a NameError.
    splitter = globals()[name]
    with pytest.raises(NotImplementedError, match=f"fastai's {name} is not in unfreeze: .*IndexSplitter"):
        splitter(0.2)


def test_two_metrics_of_one_name_each_keep_their_column(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False,
                           metrics=[partial(top_k_accuracy, k=1), partial(top_k_accuracy, k=3), accuracy])
    with learn.no_bar():
        learn.fit(1)
    results = learn.validate()

    # fastai shows both top_k_accuracy columns; a dict by name kept only the last one's value.
    assert len(learn.recorder.values[-1]) == 2 + 3 and len(results) == 1 + 3
    assert results[1] == results[3] and results[2] == 1.0
    assert learn.recorder.metric_names[3:6] == ['top_k_accuracy', 'top_k_accuracy_2', 'accuracy']


def test_validate_takes_fastais_ds_idx(path):
    learn = vision_learner(_dls(path), ARCH, pretrained=False, metrics=error_rate)
    probs, targs = learn.get_preds(ds_idx=0)

    # fastai: validate(ds_idx=0) (also its first positional argument) scores the training set.
    for results in (learn.validate(ds_idx=0), learn.validate(0)):
        assert results[1] == pytest.approx(float(error_rate(probs, targs)))
    assert learn.validate(ds_idx=1)[0] == pytest.approx(learn.validate()[0])


def test_get_preds_takes_fastais_with_preds_with_targs_and_reorder(path):
    """fastai 2.8: get_preds(with_preds=False) -> (None, targs); with_targs=False, with_loss=True ->
    (preds, None, losses); with_decoded is left out without preds; reorder=False keeps the (unshuffled) order."""
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    probs, targs = learn.get_preds()
    no_preds = learn.get_preds(with_preds=False, with_decoded=True)
    assert len(no_preds) == 2 and no_preds[0] is None and torch.equal(no_preds[1], targs)
    kept, none, losses = learn.get_preds(with_targs=False, with_loss=True)
    assert torch.equal(kept, probs) and none is None and losses.shape == targs.shape
    assert all(torch.equal(a, b) for a, b in zip(learn.get_preds(reorder=False), (probs, targs), strict=True))


def test_predict_with_input_puts_the_image_as_the_model_saw_it_first(path):
    """fastai's predict(item, with_input=True) -> (image, label, index, probs), the image int64 [3, H, W] 0-255."""
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    item = learn.dls.valid_ds.items[0][0]
    image, label, index, probs = learn.predict(item, with_input=True)
    plain_label, plain_index, plain_probs = learn.predict(item)
    assert (label, int(index)) == (plain_label, int(plain_index)) and torch.equal(probs, plain_probs)
    assert image.dtype == torch.int64 and image.shape == (3, 16, 16)
    assert 0 <= int(image.min()) <= int(image.max()) <= 255
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (learn.dls.valid.mean, learn.dls.valid.std))
    batch = next(iter(learn.dls.test_dl([item], batch_size=1)))[0][0].cpu()
    assert torch.allclose(image.float(), ((batch * std + mean) * 255).round(), atol=1.0)


def test_interpretation_takes_fastais_act(path):
    """fastai's ClassificationInterpretation.from_learner(learn, act=None) was a TypeError; act=None is the
    default activation, another act replaces it in probs (the losses stay the loss function's)."""
    learn = vision_learner(_dls(path), ARCH, pretrained=False)
    plain = ClassificationInterpretation.from_learner(learn)
    default = ClassificationInterpretation.from_learner(learn, act=None)
    raw = ClassificationInterpretation.from_learner(learn, act=lambda logits: logits)
    assert torch.equal(default.probs, plain.probs) and torch.equal(raw.losses, plain.losses)
    assert torch.allclose(raw.probs.softmax(dim=1), plain.probs, atol=1e-6)
    assert torch.equal(raw.confusion_matrix(), plain.confusion_matrix())
