"""Calibrated probabilities and the unknown flag through every door: get_preds, predict, predict_batch, tta,
the export and load_learner, the deployment files; old exports; models without a final linear layer."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from unfreeze.data import ImageDataLoaders
from unfreeze.inference import collect_logits
from unfreeze.inference.deploy import check_export, export_deployable, load_deployed_outputs, validation_images
from unfreeze.inference.export import ExportError, read_export_metadata
from unfreeze.train import builders
from unfreeze.train.builders import load_learner
from unfreeze.train.learner import Learner
from unfreeze.train.trust_fit import calibrate_after_fit, rough_temperature_note
from unfreeze.trust import NoFeatureLayerError, Trust
from unfreeze.trust.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE


@pytest.fixture(scope="module")
def calibrated(sample_dir: Path) -> Learner:
    """test_resnet (random weights) on the sample, calibrated: its own learner (the session one stays raw)."""
    from tests.inference.conftest import tiny_learner

    learn = tiny_learner(sample_dir)
    learn.calibrate()
    return learn


def far_images(n: int = 12) -> list[np.ndarray]:
    """Images that are not clothes: flat colours and noise."""
    rng = np.random.default_rng(0)
    flat = [np.full((32, 32, 3), value, np.uint8) for value in np.linspace(0, 255, n // 2).astype(int)]
    return flat + [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n - n // 2)]


def test_calibrate_fits_a_temperature_and_a_threshold(calibrated: Learner) -> None:
    trust = calibrated.trust
    assert trust.temperature != 1.0 and trust.has_score and trust.unknown_rate == 0.05
    report = trust.calibration
    assert report["after"]["nll"] <= report["before"]["nll"] + 1e-9
    assert report["unknown"]["flagged_valid"] == pytest.approx(0.05, abs=0.011)  # 200 validation images
    # Random weights: the fitted temperature sits at its upper bound, where a standard error says nothing.
    assert trust.temperature == MAX_TEMPERATURE and report["temperature_se"] is trust.temperature_se is None


def test_a_rough_temperature_is_said_once_in_the_notes(sample_dir: Path) -> None:
    """A briefly trained model calibrated on the sample's 200 validation images: the temperature is fitted
    inside its bounds, its standard error is over 5% of it, and the note says so once however often
    calibrate() refits."""
    from tests.inference.conftest import tiny_learner

    learn = tiny_learner(sample_dir)
    learn.fit_one_cycle(2, 1e-2)
    learn.calibrate()
    learn.calibrate(unknown_rate=0.02)
    trust = learn.trust
    assert 1.0 < trust.temperature < MAX_TEMPERATURE and trust.temperature_se > 0.05 * trust.temperature
    notes = [note for note in learn.recorder.notes if note.startswith("calibration:")]
    assert len(notes) == 1
    assert f"{trust.temperature:.3f} ± {trust.temperature_se:.3f}" in notes[0] and "200 validation images" in notes[0]


def test_a_rough_temperature_is_said_in_a_note() -> None:
    assert rough_temperature_note({"temperature": 1.2, "temperature_se": 0.03, "after": {"items": 5000}}) == ""
    assert rough_temperature_note({"temperature": 1.2, "temperature_se": None, "after": {"items": 50}}) == ""
    assert "1,000 validation images" in rough_temperature_note(
        {"temperature": 1.2, "temperature_se": 0.1, "after": {"items": 1000}})


def test_a_temperature_at_its_lower_bound_is_said(make_image_folder: Callable[..., Path]) -> None:
    """Validation images all predicted right (here the one the model gets right): the likelihood keeps rising
    as the temperature falls, so it stopped at its lower bound and silently sharpened every probability 20
    times. Now the raw probabilities are kept, and a warning and one note say why."""
    from tests.inference.conftest import tiny_learner

    root = make_image_folder(classes=("cat", "dog"), n_train=4, n_valid=1)
    probs, targets = tiny_learner(root, size=16, bs=4).get_preds()
    wrong = [name for name, prob, target in zip(("cat", "dog"), probs, targets, strict=True) if prob.argmax() != target]
    assert len(wrong) == 1  # the random model gets one of the two right: keep only that one
    for file in (root / "valid" / wrong[0]).iterdir():
        file.unlink()
    (root / "valid" / wrong[0]).rmdir()
    learn = tiny_learner(root, size=16, bs=4)
    with pytest.warns(UserWarning, match=r"1 validation image.*lower bound 0\.05.*raw probabilities are kept"):
        trust = learn.calibrate()
    learn.calibrate()
    assert trust.temperature == 1.0 and trust.calibration["temperature"] == 1.0 and trust.temperature_se is None
    notes = [note for note in learn.recorder.notes if note.startswith("calibration:")]
    assert len(notes) == 1 and str(MIN_TEMPERATURE) in notes[0]


def test_get_preds_applies_the_temperature(calibrated: Learner) -> None:
    logits, _ = collect_logits(calibrated.model, calibrated.dls.valid)
    probs, _ = calibrated.get_preds()
    torch.testing.assert_close(probs, (logits / calibrated.trust.temperature).softmax(dim=1))
    probs, _, scores = calibrated.get_preds(with_ood=True)
    assert scores.shape == (len(probs),)
    assert float(calibrated.trust.unknown(scores).double().mean()) == pytest.approx(0.05, abs=0.011)


def test_predict_and_predict_batch_carry_the_unknown_flag(calibrated: Learner, sample_dir: Path) -> None:
    path = sorted((sample_dir / "valid").rglob("*.png"))[0]
    prediction = calibrated.predict(path)
    label, _, _ = prediction  # still unpacks as before
    assert isinstance(prediction.unknown, bool) and isinstance(prediction.ood_score, float)
    rows = list(calibrated.predict_batch([path, *far_images()], bs=5))
    assert rows[0]["label"] == label and rows[0]["ood_score"] == pytest.approx(prediction.ood_score, rel=1e-5, abs=1e-5)
    assert all(isinstance(row["unknown"], bool) for row in rows)
    tta_rows = list(calibrated.predict_batch([path], with_tta=True))
    assert tta_rows[0]["ood_score"] == pytest.approx(prediction.ood_score, rel=1e-5, abs=1e-5)


def test_an_uncalibrated_learner_keeps_raw_softmax_and_has_no_flag(sample_learner: Learner, sample_dir: Path) -> None:
    logits, _ = collect_logits(sample_learner.model, sample_learner.dls.valid)
    torch.testing.assert_close(sample_learner.get_preds()[0], logits.softmax(dim=1))
    prediction = sample_learner.predict(sorted((sample_dir / "valid").rglob("*.png"))[0])
    assert prediction.unknown is None and prediction.ood_score is None


def test_export_round_trip_keeps_probabilities_and_scores(calibrated: Learner, tmp_path: Path) -> None:
    path = calibrated.export(tmp_path / "model.unfreeze")
    section = read_export_metadata(path)["trust"]
    assert section["temperature"] == pytest.approx(calibrated.trust.temperature)
    assert section["ood"]["method"] == calibrated.trust.score.method
    stored = load_file(str(path))
    assert {name for name in stored if name.startswith("trust.")} == {f"trust.{n}" for n in section["tensors"]}
    loaded = load_learner(path)
    images = [*far_images(), np.asarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3)), np.uint8)]
    expected = calibrated.get_preds(dl=calibrated.dls.test_dl(images), with_ood=True)
    found = loaded.get_preds(dl=loaded.dls.test_dl(images), with_ood=True)
    torch.testing.assert_close(found[0], expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(found[2], expected[2], atol=1e-5, rtol=1e-4)
    assert loaded.trust.threshold == pytest.approx(calibrated.trust.threshold)
    assert loaded.trust.temperature_se == calibrated.trust.temperature_se


def _strip_trust(source: Path, target: Path) -> Path:
    """The same export as one written before the trust section existed."""
    from safetensors import safe_open

    with safe_open(str(source), "pt") as handle:
        metadata = json.loads(handle.metadata()["unfreeze"])
    metadata.pop("trust")
    tensors = {name: tensor for name, tensor in load_file(str(source)).items() if not name.startswith("trust.")}
    save_file(tensors, str(target), {"unfreeze": json.dumps(metadata)})
    return target


def test_an_old_export_loads_with_temperature_one_and_says_so_once(calibrated: Learner, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    old = _strip_trust(calibrated.export(tmp_path / "new.unfreeze"), tmp_path / "old.unfreeze")
    monkeypatch.setattr(builders, "_SAID_WITHOUT_TRUST", [])
    with pytest.warns(UserWarning, match="exported before calibrated probabilities"):
        learn = load_learner(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second load says nothing
        load_learner(old)
    assert learn.trust.temperature == 1.0 and not learn.trust.has_score
    logits, _ = collect_logits(learn.model, learn.dls.test_dl(far_images()))
    torch.testing.assert_close(learn.get_preds(dl=learn.dls.test_dl(far_images()))[0], logits.softmax(dim=1))
    assert learn.predict(far_images()[0]).unknown is None
    rows = list(learn.predict_batch(far_images()[:2]))
    assert rows[0]["unknown"] is None and rows[0]["ood_score"] is None


def test_a_corrupt_trust_section_is_refused(calibrated: Learner, tmp_path: Path) -> None:
    from safetensors import safe_open

    path = calibrated.export(tmp_path / "model.unfreeze")
    with safe_open(str(path), "pt") as handle:
        metadata = json.loads(handle.metadata()["unfreeze"])
    tensors = load_file(str(path))
    bad = dict(metadata, trust={**metadata["trust"], "temperature": -3})
    save_file(tensors, str(tmp_path / "bad.unfreeze"), {"unfreeze": json.dumps(bad)})
    with pytest.raises(ExportError, match=r"trust\.temperature"):
        load_learner(tmp_path / "bad.unfreeze")
    name = next(name for name in tensors if name.startswith("trust.") and name.endswith("bank"))
    tensors[name] = tensors[name][:3]  # a bank that does not match its declared shape
    save_file(tensors, str(tmp_path / "short.unfreeze"), {"unfreeze": json.dumps(metadata)})
    with pytest.raises(ExportError, match="trust"):
        load_learner(tmp_path / "short.unfreeze")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "openvino"])
def test_deployment_files_output_calibrated_probabilities_and_the_score(calibrated: Learner, tmp_path: Path,
                                                                         fmt: str) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    written = export_deployable(calibrated, tmp_path / fmt, fmt)
    images, _ = validation_images(calibrated.dls.valid, limit=6)
    far = torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image in far_images(6)])
    batch = torch.cat([images, far]).contiguous()
    difference, _, _ = check_export(calibrated, written[0], fmt, batch)
    assert difference < 1e-3
    outputs = load_deployed_outputs(written[0], fmt)(batch.numpy())
    assert len(outputs) == 2 and outputs[1].shape == (len(batch),)
    expected, _, scores = calibrated.get_preds(dl=calibrated.dls.test_dl(list(batch)), with_ood=True)
    np.testing.assert_allclose(outputs[0], expected.numpy(), atol=1e-3)
    np.testing.assert_allclose(outputs[1], scores.numpy(), atol=1e-3)


def test_export_onnx_has_an_ood_score_output(calibrated: Learner, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        # The feature tap compared traced batch sizes: "the trace might not generalize" on every export.
        warnings.simplefilter("error", torch.jit.TracerWarning)
        path = calibrated.export_onnx(tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == ["logits", "probabilities", "ood_score"]
    images, _ = validation_images(calibrated.dls.valid, limit=4)
    logits, probs, scores = session.run(None, {"image": images.float().numpy() / 255})
    np.testing.assert_allclose(probs, torch.from_numpy(logits / calibrated.trust.temperature).softmax(1).numpy(),
                               atol=1e-5)
    expected = calibrated.get_preds(dl=calibrated.dls.test_dl(list(images)), with_ood=True)[2]
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-3)


class _PlainNet(nn.Module):
    def __init__(self, n_out: int, linear: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, n_out) if linear else nn.Unflatten(1, (8,))
        self.linear = linear
        self.out = None if linear else nn.Conv2d(8, n_out, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images)
        if self.linear:
            return self.classifier(features)
        return self.out(features[:, :, None, None]).flatten(1)


def test_a_plain_module_gets_features_from_its_last_linear(sample_dir: Path) -> None:
    dls = ImageDataLoaders.from_folder(sample_dir, size=32, bs=64, seed=0, num_workers=0)
    learn = Learner(dls, _PlainNet(dls.n_classes), device="cpu", quiet=True, seed=0)
    trust = learn.calibrate()
    assert trust.has_score and trust.score.bank.shape[1] == 8
    assert isinstance(learn.predict(far_images()[0]).unknown, bool)


def test_a_module_without_a_linear_layer_is_told_clearly(sample_dir: Path) -> None:
    dls = ImageDataLoaders.from_folder(sample_dir, size=32, bs=64, seed=0, num_workers=0)
    learn = Learner(dls, _PlainNet(dls.n_classes, linear=False), device="cpu", quiet=True, seed=0)
    with pytest.raises(NoFeatureLayerError, match=r"no nn\.Linear layer"):
        learn.calibrate()
    learn.calibrate(unknown_rate=None)  # the temperature alone works
    assert not learn.trust.has_score
    with pytest.warns(UserWarning, match="no unknown flag"):
        trust = calibrate_after_fit(learn, True, 0.05)  # what the end of fit_recipe does
    assert trust is not None and not trust.has_score and trust.temperature != 1.0


class _AuxiliaryLast(nn.Module):
    """The classifier registered first, then an auxiliary nn.Linear that the forward pass never runs."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, n_out)
        self.auxiliary = nn.Linear(8, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(images))


def test_a_last_linear_that_does_not_run_once_an_image_is_told_clearly(make_image_folder: Callable[..., Path]) -> None:
    """The features come from the last nn.Linear the module registers; one the forward pass skips gave no
    features, and calibrate() failed with an IndexError about a boolean mask."""
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=4, n_valid=2), size=16, bs=4, seed=0, num_workers=0)
    learn = Learner(dls, _AuxiliaryLast(dls.n_classes), device="cpu", quiet=True, seed=0)
    with pytest.raises(NoFeatureLayerError, match=r"`auxiliary`.*0 of 4 images.*unknown_rate=None"):
        learn.calibrate()
    with pytest.warns(UserWarning, match="no unknown flag"):
        trust = calibrate_after_fit(learn, True, 0.05)  # what the end of fit_recipe does: the temperature alone
    assert trust is not None and not trust.has_score


def test_training_again_drops_the_calibration_of_the_old_weights(make_image_folder: Callable[..., Path],
                                                                  tmp_path: Path) -> None:
    """calibrate() then fine_tune(): the temperature, the feature bank and the threshold belonged to the weights
    before, yet predictions and the export kept them silently. Now the fit drops them, says so once, and
    calibrate() fits them anew."""
    from tests.inference.conftest import tiny_learner

    learn = tiny_learner(make_image_folder(n_train=4, n_valid=2), size=16, bs=4)
    learn.calibrate()
    assert learn.trust.has_score
    with pytest.warns(UserWarning, match=r"fitted.*before this training.*call learn\.calibrate\(\) again"):
        learn.fine_tune(1, 1e-2)
    assert learn.trust.temperature == 1.0 and not learn.trust.has_score and learn.trust.calibration is None
    assert sum("before this training" in note for note in learn.recorder.notes) == 1
    loaded = load_learner(learn.export(tmp_path / "model.unfreeze"))
    assert loaded.trust.temperature == 1.0 and not loaded.trust.has_score
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit(1, 1e-3)  # nothing fitted to drop: nothing said
    assert learn.calibrate().has_score


def test_bad_unknown_rates_are_refused(calibrated: Learner) -> None:
    for rate in (0, 0.9, -0.1, "5%", True):
        with pytest.raises(ValueError, match="unknown_rate must be"):
            calibrated.calibrate(unknown_rate=rate)


def test_calibrate_false_keeps_raw_softmax(sample_dir: Path, tiny_learner_factory: Callable[..., Learner]) -> None:
    learn = tiny_learner_factory(sample_dir)
    trust = learn.calibrate(temperature=False)
    assert trust.temperature == 1.0 and trust.has_score
    logits, _ = collect_logits(learn.model, learn.dls.valid)
    torch.testing.assert_close(learn.get_preds()[0], logits.softmax(dim=1))
    assert Trust.problems(trust.metadata()) == []


def test_multi_label_gets_one_temperature_on_its_sigmoid_logits(tmp_path: Path) -> None:
    from tests.conftest import write_image

    from unfreeze.train.builders import vision_learner

    colors = {"red": (220, 40, 40), "green": (40, 220, 40), "blue": (40, 40, 220)}
    rows = ["image,tags"]
    for index in range(36):
        names = [name for bit, name in enumerate(colors) if (index % 7 + 1) >> bit & 1]
        mean = tuple(int(np.mean([colors[name][c] for name in names])) for c in range(3))
        write_image(tmp_path / f"{index}.png", (24, 24), mean, seed=index)
        rows.append(f"{index}.png,{' '.join(names)}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(tmp_path, label_delim=" ", size=32, bs=16, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, seed=0, device="cpu", quiet=True)
    trust = learn.calibrate()
    assert trust.has_score and trust.calibration["before"]["items"] == len(dls.valid.dataset)
    logits, _ = collect_logits(learn.model, learn.dls.valid)
    torch.testing.assert_close(learn.get_preds()[0], torch.sigmoid(logits / trust.temperature))
    _, mask, probs = prediction = learn.predict(tmp_path / "0.png")
    assert mask.dtype == torch.bool and isinstance(prediction.unknown, bool)
    loaded = load_learner(learn.export(tmp_path / "model.unfreeze"))
    assert loaded.trust.temperature == pytest.approx(trust.temperature)
    torch.testing.assert_close(loaded.predict(tmp_path / "0.png")[2], probs, atol=1e-5, rtol=1e-4)


def test_fit_recipe_refuses_a_bad_unknown_rate_before_training(sample_dir: Path,
                                                               tiny_learner_factory: Callable[..., Learner]) -> None:
    learn = tiny_learner_factory(sample_dir)
    with pytest.raises(ValueError, match="unknown_rate must be"):
        learn.fit_recipe(1, unknown_rate=2.0)
    assert learn.recorder.history == []  # nothing trained


def _leaky_copy_of_the_sample(sample_dir: Path, root: Path, copies_per_class: int) -> Path:
    """The sample with its training images, and a validation set of `copies_per_class` copies of training
    images per class plus the sample's first 5 validation images of each class."""
    import shutil

    for class_dir in sorted((sample_dir / "train").iterdir()):
        shutil.copytree(class_dir, root / "train" / class_dir.name)
        valid = root / "valid" / class_dir.name
        valid.mkdir(parents=True)
        for source in sorted(class_dir.iterdir())[:copies_per_class]:
            shutil.copy(source, valid / f"copy_{source.name}")
        for source in sorted((sample_dir / "valid" / class_dir.name).iterdir())[:5]:
            shutil.copy(source, valid / source.name)
    return root


def test_validation_copies_of_training_images_are_said_and_left_out_of_the_threshold(sample_dir: Path,
                                                                                      tmp_path: Path) -> None:
    # 100 of 150 validation images copy training images: they score about 0, and with them counted the
    # threshold of "5% of validation flagged" sat among the copies, flagging most new images.
    from tests.inference.conftest import tiny_learner

    learn = tiny_learner(_leaky_copy_of_the_sample(sample_dir, tmp_path / "leaky", copies_per_class=10))
    with pytest.warns(UserWarning, match="100 of the 150 validation images are copies of training images") as said:
        trust = learn.calibrate()
    assert "left out of the unknown flag's threshold" in str(said[0].message)
    assert any("copies of training images" in note for note in learn.recorder.notes)
    _, _, scores = learn.get_preds(with_ood=True)
    names = [path.name for path, _ in learn.dls.valid.dataset.items]
    copies = torch.tensor([name.startswith("copy_") for name in names])
    assert 10 * float(scores[copies].max()) < float(scores[~copies].min())  # float16 bank rows: not exactly 0
    assert trust.threshold == pytest.approx(float(torch.quantile(scores[~copies].double(), 0.95)), rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.calibrate()  # said once


def test_too_few_other_validation_images_keep_every_image_in_the_threshold_and_say_so(sample_dir: Path,
                                                                                       tmp_path: Path) -> None:
    from tests.inference.conftest import tiny_learner

    root = _leaky_copy_of_the_sample(sample_dir, tmp_path / "leaky", copies_per_class=10)
    for class_dir in (root / "valid").iterdir():  # 1 image a class that is no copy: 10 in all, under 20
        for extra in sorted(path for path in class_dir.iterdir() if not path.name.startswith("copy_"))[1:]:
            extra.unlink()
    learn = tiny_learner(root)
    with pytest.warns(UserWarning, match="Fewer than 20 other validation images remain"):
        trust = learn.calibrate()
    _, _, scores = learn.get_preds(with_ood=True)
    assert trust.threshold == pytest.approx(float(torch.quantile(scores.double(), 0.95)), rel=1e-5)
