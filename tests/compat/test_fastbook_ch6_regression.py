# ruff: noqa: F403, F405
"""fastbook chapter 6's image regression (the head-pose model) and fastai's RegressionBlock, with only the
import changed, on small made-up data: a bright disc drawn where the "head centre" is.

The head-pose set follows BIWI's layout (`<person>/frame_00003_rgb.jpg` with `frame_00003_pose.txt`,
and `01/rgb.cal`, the camera's calibration), scaled down so that the cells run on a CPU in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from unfreeze import *  # the point of these tests

pytestmark = pytest.mark.filterwarnings("ignore::unfreeze.data.spellings.UnsupportedTransformWarning",
                                        "ignore::unfreeze.data.DataWarning")

ARCH = "test_resnet"
WIDTH, HEIGHT, FOCAL = 64, 48, 50.0


def _disc_image(file, x, y, size=(WIDTH, HEIGHT), radius=5):
    image = Image.new("RGB", size, (20, 30, 40))
    ImageDraw.Draw(image).ellipse([x - radius, y - radius, x + radius, y + radius], fill=(250, 250, 250))
    file.parent.mkdir(parents=True, exist_ok=True)
    image.save(file)


@pytest.fixture
def biwi(tmp_path, monkeypatch):
    """BIWI head pose in miniature under $FASTAI_HOME/data/biwi_head_pose: two people, 10 frames each."""
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    root = tmp_path / "fastai_home" / "data" / "biwi_head_pose"
    rng = np.random.default_rng(0)
    centres = {}
    for person in ("01", "13"):
        (root / person).mkdir(parents=True)
        (root / person / "rgb.cal").write_text(
            f"{FOCAL} 0 {WIDTH / 2}\n0 {FOCAL} {HEIGHT / 2}\n0 0 1\n\n0 0 0 0\n\n1 0 0\n0 1 0\n0 0 1\n\n0 0 0\n")
        for frame in range(10):
            x, y = rng.uniform(10, WIDTH - 10), rng.uniform(10, HEIGHT - 10)
            name = f"frame_{frame:05d}"
            _disc_image(root / person / f"{name}_rgb.jpg", x, y)
            depth = 1000.0  # the pose file holds the 3D centre; the camera projects it onto (x, y)
            tx, ty = (x - WIDTH / 2) * depth / FOCAL, (y - HEIGHT / 2) * depth / FOCAL
            (root / person / f"{name}_pose.txt").write_text(f"1 0 0\n0 1 0\n0 0 1\n\n{tx} {ty} {depth}\n")
            centres[root / person / f"{name}_rgb.jpg"] = (x, y)
    return root, centres


def test_chapter_6_head_pose_cells(biwi):
    _, centres = biwi
    path = untar_data(URLs.BIWI_HEAD_POSE)
    img_files = get_image_files(path)
    def img2pose(x): return Path(f'{str(x)[:-7]}pose.txt')
    im = PILImage.create(img_files[0])
    cal = np.genfromtxt(path/'01'/'rgb.cal', skip_footer=6)
    def get_ctr(f):
        ctr = np.genfromtxt(img2pose(f), skip_header=3)
        c1 = ctr[0] * cal[0][0]/ctr[2] + cal[0][2]
        c2 = ctr[1] * cal[1][1]/ctr[2] + cal[1][2]
        return tensor([c1,c2])
    biwi = DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_items=get_image_files,
        get_y=get_ctr,
        splitter=FuncSplitter(lambda o: o.parent.name=='13'),
        batch_tfms=aug_transforms(size=(24,32)),
    )
    dls = biwi.dataloaders(path, bs=4)
    dls.show_batch(max_n=9, figsize=(8,6))
    xb,yb = dls.one_batch()
    learn = vision_learner(dls, ARCH, y_range=(-1,1), pretrained=False)
    learn.lr_find(num_it=10)
    lr = 1e-2
    learn.fine_tune(1, lr)
    learn.show_results(ds_idx=1, nrows=3, figsize=(6,8))
    preds, targs = learn.get_preds()

    assert im.size == (WIDTH, HEIGHT) and get_ctr(img_files[0]).tolist() == pytest.approx(centres[img_files[0]])
    assert xb.shape == (4, 3, 32, 32) and yb.shape == (4, 2)
    assert isinstance(dls.loss_func, MSELossFlat) and dls.c == 2 and dls.vocab == ['x0', 'y0']
    valid_files = [file for file, _ in dls.valid_ds.items]
    expected = torch.tensor([[x * 2 / WIDTH - 1, y * 2 / HEIGHT - 1] for x, y in (centres[f] for f in valid_files)])
    assert torch.allclose(targs, expected, atol=1e-4)  # the points scaled to [-1, 1], as fastai's PointScaler
    assert preds.shape == (10, 2) and preds.min() > -1 and preds.max() < 1  # y_range's sigmoid
    assert learn.recorder.metric_names == ['epoch', 'train_loss', 'valid_loss', 'time']
    assert math.isfinite(learn.recorder.values[-1][1])
    assert Path('batch.png').stat().st_size > 1000 and Path('results.png').stat().st_size > 1000


def test_points_predict_in_the_images_pixels_after_export_and_load(biwi):
    root, centres = biwi
    def get_ctr(f): return tensor(centres[f])
    dls = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files, get_y=get_ctr,
                    splitter=FuncSplitter(lambda o: o.parent.name == '13'),
                    item_tfms=Resize(32, method='squish')).dataloaders(root, bs=4)
    learn = vision_learner(dls, ARCH, y_range=(-1, 1), pretrained=False, metrics=[mae])
    learn.fit_one_cycle(1, 1e-2)
    file = sorted(centres)[-1]
    points, decoded, raw = learn.predict(file)
    learn.export('points.unfreeze')
    loaded = load_learner(dls.path / 'points.unfreeze')
    loaded_points, _, _ = loaded.predict(file)

    assert points.shape == (1, 2) and decoded.shape == (2,)
    assert points[0].tolist() == pytest.approx([(float(raw[0]) + 1) * WIDTH / 2, (float(raw[1]) + 1) * HEIGHT / 2])
    assert torch.allclose(points, loaded_points, atol=1e-4)
    with pytest.raises(ValueError, match=r"use learn\.get_preds"):
        learn.tta()
    with pytest.raises(ValueError, match="MixUp and CutMix mix class labels"):
        learn.fit(1, cbs=MixUp())
    assert loaded.task == Regression(points=True) and loaded.dls.vocab == ['x0', 'y0']
    assert isinstance(loaded.model.head[-1], torch.nn.Module) and type(loaded.model.head[-1]).__name__ == 'SigmoidRange'


@pytest.fixture
def brightness(tmp_path, monkeypatch):
    """Grey images whose brightness is their target number, named `img_<value>.png`, in a flat folder."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    root = tmp_path / "bright"
    root.mkdir()
    for index, value in enumerate(np.linspace(0.1, 0.9, 20)):
        Image.new("RGB", (20, 20), (int(value * 255),) * 3).save(root / f"img_{index:02d}_{value:.3f}.png")
    return root


def test_regression_block_from_a_folder_and_a_label_function(brightness):
    def get_value(path): return float(path.stem.split('_')[-1])
    block = DataBlock(blocks=(ImageBlock, RegressionBlock(n_out=1)), get_items=get_image_files, get_y=get_value,
                      splitter=RandomSplitter(valid_pct=0.25, seed=42), item_tfms=Resize(16))
    dls = block.dataloaders(brightness, bs=4)
    learn = vision_learner(dls, ARCH, pretrained=False, loss_func=MSELossFlat(), y_range=(0, 1),
                           metrics=[mse, mae, R2Score(), rmse])
    learn.fit_one_cycle(2, 1e-2)
    (value,), _, _ = learn.predict(brightness / 'img_05_0.311.png')
    preds, targs = learn.get_preds()

    assert dls.vocab == ['value'] and dls.c == 1 and len(dls.valid_ds) == 5
    assert learn.recorder.metric_names[3:-1] == ['mse', 'mae', 'r2_score', 'rmse']
    assert learn.recorder.values[-1][2] == pytest.approx(float(((preds - targs) ** 2).mean()), rel=1e-5)
    assert learn.recorder.values[-1][2] == pytest.approx(learn.recorder.values[-1][1], rel=1e-5)  # loss is MSE
    assert 0 < value < 1 and preds.shape == targs.shape == (5, 1)
    with pytest.raises(DataError, match="RegressionBlock\\(n_out=2\\)"):
        DataBlock(blocks=(ImageBlock, RegressionBlock(n_out=2)), get_items=get_image_files,
                  get_y=get_value).dataloaders(brightness)
    with pytest.raises(DataError, match="not a number"):
        DataBlock(blocks=(ImageBlock, RegressionBlock), get_items=get_image_files,
                  get_y=lambda p: p.name).dataloaders(brightness)


def test_regression_from_csv_with_several_columns_and_l1(brightness):
    rows = [f"{p.name},{p.stem.split('_')[-1]},{1 - float(p.stem.split('_')[-1]):.3f}"
            for p in sorted(brightness.glob('*.png'))]
    (brightness / 'targets.csv').write_text("file,bright,dark\n" + "\n".join(rows) + "\n")
    dls = ImageDataLoaders.from_csv(brightness, 'targets.csv', label_col=['bright', 'dark'], y_block=RegressionBlock,
                                    valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=4)
    learn = vision_learner(dls, ARCH, pretrained=False, loss_func=L1LossFlat(), metrics='mae')
    learn.fit(1, 1e-3)
    bright, dark = learn.predict(brightness / 'img_00_0.100.png')[0]

    assert dls.vocab == ['bright', 'dark'] and dls.train_ds.targets.shape == (15, 2)
    assert learn.recorder.values[-1][1] == pytest.approx(learn.recorder.values[-1][2], rel=1e-5)  # L1 is MAE
    assert isinstance(bright, float) and isinstance(dark, float)
    with pytest.raises(ValueError, match="scores single-label predictions, but the data is regression"):
        learn.metrics = [error_rate]
    with pytest.raises(ValueError, match=r"this learner predicts numbers\. Use learn\.show_results\(\)"):
        ClassificationInterpretation.from_learner(learn)


def test_a_regression_learner_is_not_calibrated(brightness):
    """Temperature and unknown score are a classifier's: calibrate() refuses numbers, and predictions stay
    the model's outputs (a softmax over one output would make every prediction 1.0)."""
    def get_value(path): return float(path.stem.split('_')[-1])
    dls = DataBlock(blocks=(ImageBlock, RegressionBlock(n_out=1)), get_items=get_image_files, get_y=get_value,
                    splitter=RandomSplitter(valid_pct=0.25, seed=42), item_tfms=Resize(16)).dataloaders(brightness,
                                                                                                   bs=4)
    learn = vision_learner(dls, ARCH, pretrained=False, y_range=(0, 1))
    with pytest.raises(ValueError, match="regression"):
        learn.calibrate()
    preds, _ = learn.get_preds()
    assert preds.shape == (5, 1) and not torch.allclose(preds, torch.ones_like(preds))
