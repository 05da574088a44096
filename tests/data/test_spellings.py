"""fastai transform spellings: how they map onto size / item_size / resize_method / augment, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from unfreeze.data import BatchAugment, ImageDataLoaders, spellings
from unfreeze.data.spellings import (
    Normalize,
    RandomResizedCrop,
    Resize,
    UnsupportedTransformWarning,
    aug_transforms,
    imagenet_stats,
    resolve_pipeline,
)

NONE = {"size": None, "item_size": None, "resize_method": None, "augment": None}


def test_no_transforms_keep_unfreeze_defaults() -> None:
    settings = resolve_pipeline(None, None, **NONE)
    assert (settings.size, settings.item_size, settings.resize_method) == (224, None, "crop")
    assert settings.augment == BatchAugment()
    assert resolve_pipeline(None, None, **{**NONE, "augment": False}).augment is None


def test_presizing_and_aug_transforms_map_onto_batch_augment() -> None:
    settings = resolve_pipeline(Resize(64, method="pad"), aug_transforms(size=48, mult=2, do_flip=False, max_warp=0,
                                                                          min_zoom=0.9, min_scale=0.5), **NONE)
    assert (settings.size, settings.item_size, settings.resize_method) == (48, 64, "pad")
    assert settings.augment == BatchAugment(flip_p=0.0, max_rotate=20.0, max_lighting=0.4, min_zoom=0.9,
                                            min_scale=0.5)


def test_random_resized_crop_alone_only_crops() -> None:
    settings = resolve_pipeline(RandomResizedCrop(32, min_scale=0.35), None, **NONE)
    assert (settings.size, settings.item_size) == (32, 32)
    assert settings.augment.min_scale == pytest.approx(0.35)
    assert settings.augment.flip_p == settings.augment.max_rotate == settings.augment.max_lighting == 0.0


@pytest.mark.parametrize(("item", "keywords", "expected"), [
    (Resize(64), {"item_size": 96}, "item_size=96"),
    (Resize(64, method="squish"), {"resize_method": "crop"}, "resize_method='crop'"),
    (None, {"size": 32, "augment": True}, "size=32"),
])
def test_keywords_that_contradict_the_transforms_name_both(item, keywords, expected) -> None:
    with pytest.raises(ValueError, match=expected):
        resolve_pipeline(item, aug_transforms(size=48, max_warp=0), **{**NONE, **keywords})


def test_wrong_transform_objects_and_sizes_say_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"item_tfms accepts Resize"):
        resolve_pipeline("Resize(224)", None, **NONE)
    with pytest.raises(TypeError, match=r"use unfreeze.s Normalize.from_stats\(mean, std\)"):  # not fastai's class
        resolve_pipeline(None, [*aug_transforms(max_warp=0), type("Normalize", (), {})()], **NONE)
    with pytest.raises(ValueError, match="smaller than the final size"):
        resolve_pipeline(Resize(32), aug_transforms(size=64, max_warp=0), **NONE)
    spellings._WARNED.discard("rectangle Resize")  # warned once per process: make this the first time
    with pytest.warns(UnsupportedTransformWarning, match=r"square images; size \(224, 160\) becomes 224 x 224"):
        assert Resize((224, 160)).size == 224  # fastbook's rectangles train on the longer side's square
    with pytest.raises(ValueError, match="square"):
        Resize((224, 0))
    with pytest.raises(ValueError, match="method must be one of"):
        Resize(224, method="stretch")


def test_unsupported_settings_warn_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spellings, "_WARNED", set())
    with pytest.warns(UnsupportedTransformWarning, match="max_warp=0.2"):
        aug_transforms()
    with pytest.warns(UnsupportedTransformWarning, match="flip_vert"):
        aug_transforms(flip_vert=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug_transforms()  # said once already


def test_default_batch_augment_draws_are_unchanged_by_the_new_fields() -> None:
    # The new draw (min_scale) comes last and only when used, so resumed runs replay the same stream.
    plain = BatchAugment().draw(np.random.default_rng(3), 16)
    scaled = BatchAugment(min_scale=0.5).draw(np.random.default_rng(3), 16)
    assert plain.angle.equal(scaled.angle) and plain.brightness.equal(scaled.brightness)
    assert (scaled.zoom >= plain.zoom).all() and (scaled.zoom <= plain.zoom * 2**0.5 + 1e-6).all()


def test_factories_accept_the_spellings(make_image_folder) -> None:
    root = make_image_folder()
    dls = ImageDataLoaders.from_folder(root, item_tfms=Resize(20), batch_tfms=aug_transforms(size=16, max_warp=0),
                                       bs=4)
    assert (dls.size, dls.train.dataset.item_size) == (16, 20) and dls.train.augment is not None
    explicit = ImageDataLoaders.from_folder(root, size=16, item_size=20, bs=4)
    assert (explicit.size, explicit.train.dataset.item_size) == (16, 20)
    with pytest.raises(ValueError, match="size=24 but batch_tfms"):
        ImageDataLoaders.from_folder(root, size=24, batch_tfms=aug_transforms(size=16, max_warp=0))


def test_normalize_from_stats_sets_the_loaders_statistics_and_nothing_else() -> None:
    normalize = Normalize.from_stats(*imagenet_stats)
    settings = resolve_pipeline(Resize(32), [*aug_transforms(size=24, max_warp=0), normalize], **NONE)
    assert settings.normalize == normalize and settings.augment is not None and settings.size == 24
    only = resolve_pipeline(None, normalize, **NONE)  # a transform given: fastai's meaning, no augmentation
    assert (only.normalize, only.augment, only.size) == (normalize, None, 224)
    assert resolve_pipeline(None, None, **NONE).normalize is None


def test_normalize_refuses_what_is_not_three_channels() -> None:
    with pytest.raises(ValueError, match="expected 3 mean values"):
        Normalize.from_stats([0.5], [0.5])
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize.from_stats([0.5] * 3, [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="dim=1, ndim=4"):
        Normalize.from_stats(*imagenet_stats, dim=2)
    with pytest.raises(ValueError, match="takes one of Normalize"):
        resolve_pipeline(None, [Normalize.from_stats(*imagenet_stats)] * 2, **NONE)
