"""fastai's Learner spellings mapped onto unfreeze: cbs=, wd=, save/load, export names, validate by
position, get_preds(with_decoded=), to_fp16, summary and the fastai-named callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unfreeze.data import ImageDataLoaders
from unfreeze.train.builders import load_learner, vision_learner
from unfreeze.train.callbacks import Callback, CSVLogger
from unfreeze.train.checkpoint import CheckpointError
from unfreeze.train.fastai_idioms import EarlyStoppingCallback, SaveModelCallback
from unfreeze.train.metrics import ValidationResults


@pytest.fixture
def dls(make_image_folder):
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)
    return ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)


def make_learner(dls, **kwargs):
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("seed", 0)
    return vision_learner(dls, "test_resnet", metrics=["error_rate", "accuracy"], pretrained=False, **kwargs)


class CountFits(Callback):
    def __init__(self):
        self.fits = 0

    def before_fit(self, learner):
        self.fits += 1


class WeightDecaySeen(Callback):
    def before_fit(self, learner):
        self.seen = sorted({group["weight_decay"] for group in learner.optimizer.param_groups})


def test_data_spellings(dls):
    images, targets = dls.one_batch()
    assert images.shape == (4, 3, 16, 16) and targets.shape == (4,)
    assert dls.c == 3 and dls.train_ds is dls.train.dataset and dls.valid_ds is dls.valid.dataset
    assert dls.path.name == "images"


def test_learner_cbs_take_part_in_every_fit_and_fit_cbs_in_one(dls):
    every, once = CountFits(), CountFits()
    learn = make_learner(dls, cbs=every)
    learn.fit(1, 1e-3, cbs=[once])
    learn.fine_tune(1)
    assert (every.fits, once.fits) == (3, 1)  # fine_tune is two fits
    assert learn.callbacks == [every]
    with pytest.raises(TypeError, match=r"add \(\) to create an instance"):
        learn.fit(1, cbs=CountFits)


def test_wd_is_the_weight_decay_and_a_fit_wd_lasts_one_fit(dls):
    learn = make_learner(dls, wd=0.1)
    assert learn.weight_decay == 0.1
    with pytest.raises(ValueError, match="wd is fastai's spelling of weight_decay"):
        make_learner(dls, wd=0.1, weight_decay=0.2)
    seen = WeightDecaySeen()
    learn.fit(1, 1e-3, cbs=seen, wd=0.5)
    assert seen.seen == [0.0, 0.5]  # biases and norm weights never decay
    assert learn.weight_decay == 0.1
    assert sorted({group["weight_decay"] for group in learn.optimizer.param_groups}) == [0.0, 0.1]
    learn.fit_one_cycle(1, 1e-3, cbs=seen)
    assert seen.seen == [0.0, 0.1]


def test_early_stopping_callback_has_fastai_patience(dls):
    learn = make_learner(dls)
    # min_delta 10: no epoch after the first counts as an improvement.
    learn.fit(5, 1e-3, cbs=EarlyStoppingCallback(monitor="valid_loss", min_delta=10, patience=2))
    assert len(learn.recorder.history) == 3  # the first epoch, then 2 without improvement
    with pytest.raises(ValueError, match=r"np\.less, np\.greater"):
        EarlyStoppingCallback(comp=max)
    assert EarlyStoppingCallback("accuracy", comp=np.less).mode == "min"


def test_save_model_callback_writes_under_learn_path_and_restores_the_best(dls, tmp_path):
    learn = make_learner(dls, path=tmp_path)
    saver = SaveModelCallback(monitor="valid_loss", fname="best")
    learn.fit(3, 1e-2, cbs=saver)
    assert saver.path == tmp_path / "models" / "best.safetensors" and saver.path.is_file()
    best = learn.recorder.history[saver.best_epoch]["valid_loss"]
    assert learn.validate()["valid_loss"] == pytest.approx(best, abs=1e-5)


def test_save_and_load_with_the_optimizer_state(dls, tmp_path):
    learn = make_learner(dls, path=tmp_path)
    learn.fit(1, 1e-3)
    weights = learn.save("stage-1", with_opt=True)
    assert weights == tmp_path / "models" / "stage-1.safetensors"
    saved = torch.load(tmp_path / "models" / "stage-1.opt.pt", weights_only=True)
    expected = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, 1e-2)

    assert learn.load("stage-1") is learn
    assert all(torch.equal(expected[k], v) for k, v in learn.model.state_dict().items())
    moments = learn.optimizer.state_dict()["state"]
    assert all(torch.equal(moments[i]["exp_avg"], saved["optimizer"]["state"][i]["exp_avg"]) for i in moments)

    learn.save("stage-1")  # weights only: the stale optimizer file goes
    assert not (tmp_path / "models" / "stage-1.opt.pt").exists()
    with pytest.raises(FileNotFoundError, match=r"with_opt=True"):
        learn.load("stage-1", with_opt=True)
    with pytest.raises(FileNotFoundError, match=r"Saved names in .*\['stage-1'\]"):
        learn.load("stage-2")


def test_n_epoch_and_epoch_follow_the_current_fit_as_fastais(dls):
    """fastai 2.8: n_epoch 1 and epoch 0 before a fit; after fit(1): 1, 0; after fit_one_cycle(2): 2, 1."""
    learn = make_learner(dls)
    assert (learn.n_epoch, learn.epoch) == (1, 0)
    learn.fit(1, 1e-3)
    assert (learn.n_epoch, learn.epoch) == (1, 0)
    learn.fit_one_cycle(2, 1e-3)
    assert (learn.n_epoch, learn.epoch) == (2, 1)


def test_load_takes_fastais_device_and_strict(dls, tmp_path):
    """fastai's learn.load(name, device='cpu', strict=False) was a TypeError: strict=False skips the names only
    the file or only the model holds (torch's rule), strict=True refuses them; device is where the file is read."""
    from safetensors.torch import load_file, save_file

    learn = make_learner(dls, path=tmp_path)
    weights = learn.save("stage-1")
    saved = load_file(str(weights))
    last = sorted(name for name in saved if name.startswith("head."))[-1]
    saved.pop(last)
    save_file({**saved, "extra.weight": torch.zeros(1)}, str(tmp_path / "models" / "partial.safetensors"))
    kept = learn.model.state_dict()[last].clone()
    with torch.no_grad():
        for parameter in learn.model.parameters():
            parameter.add_(1.0)

    assert learn.load("partial", device="cpu", strict=False) is learn
    state = learn.model.state_dict()
    assert torch.equal(state[last], kept + 1) and all(torch.equal(state[name], saved[name]) for name in saved)
    with pytest.raises(CheckpointError, match="does not fit"):
        learn.load("partial", strict=True)
    with pytest.raises(RuntimeError):
        learn.load("stage-1", device="nodevice")


def test_export_never_writes_a_pickle_and_load_learner_finds_it(dls, tmp_path, capsys):
    learn = make_learner(dls, path=tmp_path)
    assert learn.export() == tmp_path / "export.unfreeze"
    assert learn.export(fname="pets.pkl") == tmp_path / "pets.unfreeze"
    assert "pets.unfreeze" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.pkl"))
    assert load_learner(tmp_path / "export.pkl", cpu=True).dls.vocab == ["ant", "bee", "cat"]
    with pytest.raises(ValueError, match="disagree"):
        load_learner(tmp_path / "export.unfreeze", device="cpu", cpu=False)


def test_validate_indexes_like_fastais_list_and_stays_a_dict(dls):
    learn = make_learner(dls)
    results = learn.validate()
    assert isinstance(results, ValidationResults)
    assert results[0] == results["valid_loss"] and results[1] == results["error_rate"]
    assert results[-1] == results["accuracy"] and results[1:] == [results["error_rate"], results["accuracy"]]
    assert results == dict(results) and list(results) == ["valid_loss", "error_rate", "accuracy"]
    with pytest.raises(IndexError, match="positions 0 to 2"):
        results[3]


def test_get_preds_with_decoded_and_loss_in_fastais_order(dls):
    learn = make_learner(dls)
    probs, targets, decoded, losses = learn.get_preds(with_decoded=True, with_loss=True)
    assert torch.equal(decoded, probs.argmax(dim=1)) and losses.shape == targets.shape == (12,)


def test_to_fp16_and_to_fp32_chain(dls, capsys):
    learn = make_learner(dls)
    assert learn.to_fp16() is learn and learn.to_fp16() is learn
    assert capsys.readouterr().out.count("mixed precision runs on CUDA only") <= 1
    assert learn.to_fp32() is learn and learn.amp_dtype is None


def test_summary_lists_groups_with_trainable_and_frozen_counts(dls, capsys):
    learn = make_learner(dls, cbs=CSVLogger("h.csv"))
    learn.freeze()
    text = learn.summary()
    assert text == capsys.readouterr().out.rstrip("\n")
    head = sum(p.numel() for n, p in learn.model.named_parameters() if n.startswith("head."))
    assert f"{'head':<10} {len(learn.param_groups[-1]):>8} {head:>14,} {0:>14,}" in text
    for expected in ("body 0", "groups 0-1 frozen", "Input: batches of 4 x 3 x 16 x 16", "AdamW",
                     "weight decay 0.01", "CrossEntropyLoss", "CSVLogger"):
        assert expected in text


@pytest.mark.filterwarnings("ignore::unfreeze.train.lr_find.LRFindWarning")  # a 10-step curve is noisy
def test_recorder_plots_the_last_lr_find(dls, tmp_path):
    learn = make_learner(dls)
    with pytest.raises(ValueError, match=r"Call learn.lr_find\(\) first"):
        learn.recorder.plot_lr_find()
    result = learn.lr_find(num_it=10)
    assert learn.lr_find_result is result and math.isfinite(result.valley)
    assert learn.recorder.plot_lr_find(tmp_path / "lr.png").stat().st_size > 1000


def test_load_takes_with_opt_positionally_as_fastai_and_as_before(dls, tmp_path):
    """fastai's load(file, device, with_opt, strict) is positional; unfreeze's earlier load(name, with_opt) too."""
    learn = make_learner(dls, path=tmp_path)
    learn.save("plain")  # no optimizer state
    assert learn.load("plain", "cpu", False, True) is learn
    with pytest.raises(FileNotFoundError, match="No optimizer state"):
        learn.load("plain", True)  # the earlier second argument: with_opt=True requires the state
    with pytest.raises(FileNotFoundError, match="No optimizer state"):
        learn.load("plain", None, True)
