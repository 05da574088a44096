"""The device-resident store: same batches as the host path, built only when complete and allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unfreeze.data import DataWarning, ImageDataLoaders
from unfreeze.data.device_store import DeviceStore, device_budget
from unfreeze.data.transforms import AugmentParams, BatchAugment, to_device_async


def _epoch(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def _assert_same_epochs(host_loader, store_loader, epochs=(0, 1, 2)) -> None:
    for epoch in epochs:
        host, stored = _epoch(host_loader, epoch), _epoch(store_loader, epoch)
        assert len(host) == len(stored) > 0
        for (host_images, host_labels), (images, labels) in zip(host, stored, strict=True):
            assert torch.equal(host_labels, labels)
            torch.testing.assert_close(images, host_images, rtol=0, atol=1e-6)


def _pair(root: Path, **options) -> tuple[ImageDataLoaders, ImageDataLoaders]:
    """The same data twice: host path only, and the store forced on (on the CPU)."""
    host = ImageDataLoaders.from_folder(root, seed=3, num_workers=0, **options)
    stored = ImageDataLoaders.from_folder(root, seed=3, num_workers=0, **options)
    for loader in (host.train, host.valid):
        loader.device_cache = False
    for loader in (stored.train, stored.valid):
        loader.device_cache = True
    return host, stored


@pytest.mark.parametrize("augment", [True, False])
def test_store_gives_the_host_paths_batches(make_image_folder, augment: bool):
    root = make_image_folder(n_train=10, n_valid=5, size=(20, 20))
    host, stored = _pair(root, size=16, item_size=20, bs=4, augment=augment)
    _assert_same_epochs(host.train, stored.train)
    _assert_same_epochs(host.valid, stored.valid, epochs=(0, 1))
    # The first epoch decodes through the host path; the store exists from the second on.
    assert stored.train._store is not None and stored.train._store.uniform
    assert host.train._store is None


def test_mixed_shapes_use_per_image_crops(make_image_folder):
    root = make_image_folder(n_train=8, n_valid=4, size=(30, 20))  # crop resize keeps the aspect ratio
    host, stored = _pair(root, size=16, bs=3)
    _assert_same_epochs(host.train, stored.train)
    store = stored.train._store
    assert store is not None and not store.uniform and store.images[0].shape == (3, 16, 24)


def test_undecodable_files_are_left_out_of_the_store(make_image_folder):
    root = make_image_folder(n_train=8, n_valid=4, size=(20, 20))
    (root / "train" / "cat" / "broken.png").write_bytes(b"not an image at all")
    host, stored = _pair(root, size=20, bs=4)
    with pytest.warns(UserWarning, match="could not be decoded"):
        stored.preload()
    with pytest.warns(UserWarning, match="could not be decoded"):
        host.train.preload()
    store = stored.train._store
    assert store is not None and len(store) == len(stored.train.dataset) - 1
    assert (store.rows(np.arange(len(stored.train.dataset))) == -1).sum() == 1
    _assert_same_epochs(host.train, stored.train)


def test_preload_fills_the_cache_and_builds_the_store(make_image_folder):
    root = make_image_folder(n_train=6, n_valid=3, size=(20, 20))
    dls = ImageDataLoaders.from_folder(root, seed=0, size=20, bs=4, num_workers=0)
    for loader in (dls.train, dls.valid):
        loader.device_cache = True
    assert dls.preload() is dls
    assert len(dls.train.dataset.cache) == len(dls.train.dataset)
    assert dls.train._store is not None and dls.valid._store is not None
    assert dls.train._store.n_bytes == 12 * 3 * 20 * 20


def test_auto_mode_keeps_the_host_path_on_the_cpu(make_image_folder):
    root = make_image_folder(n_train=6, n_valid=3, size=(20, 20))
    dls = ImageDataLoaders.from_folder(root, seed=0, size=20, bs=4, num_workers=0).preload()
    assert dls.train.device_cache is None and dls.train._store is None
    assert device_budget(torch.device("cpu")) == 0


def test_incomplete_cache_builds_no_store(make_image_folder):
    root = make_image_folder(n_train=8, n_valid=4, size=(20, 20))
    dls = ImageDataLoaders.from_folder(root, seed=0, size=20, bs=4, num_workers=0, cache_bytes=3 * 20 * 20 * 3)
    dls.train.device_cache = True
    with pytest.warns(DataWarning, match="cannot be kept there"):
        _epoch(dls.train, 0)
    _epoch(dls.train, 1)
    assert len(dls.train.dataset.cache) < len(dls.train.dataset)
    assert dls.train._store is None


def test_store_follows_the_device(make_image_folder):
    root = make_image_folder(n_train=6, n_valid=3, size=(20, 20))
    dls = ImageDataLoaders.from_folder(root, seed=0, size=20, bs=4, num_workers=0)
    dls.train.device_cache = True
    dls.train.preload()
    first = dls.train._store
    dls.to("cpu")
    assert dls.train._device_store() is first  # same device: kept
    dls.train._store.device = torch.device("meta")  # as if built for another device
    assert dls.train._device_store() is not first


def test_store_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="one image and one label per item"):
        DeviceStore([0], [torch.zeros(3, 4, 4, dtype=torch.uint8)], [0, 1], 1, 4, torch.device("cpu"))


def test_augment_params_move_as_one_packed_copy():
    params = BatchAugment().draw(np.random.default_rng(0), 5)
    moved = params.to(torch.device("meta"))
    assert all(getattr(moved, name).device.type == "meta" for name in AugmentParams.__dataclass_fields__)
    assert moved.flip.dtype == torch.bool and moved.shift.shape == (5, 2)
    assert params.to(torch.device("cpu")) is params


def test_to_device_async_on_the_cpu_is_a_plain_move():
    values = torch.arange(6)
    assert to_device_async(values, torch.device("cpu")) is values


def test_forcing_the_store_overrides_an_earlier_automatic_refusal(make_image_folder):
    root = make_image_folder(n_train=6, n_valid=3, size=(20, 20))
    dls = ImageDataLoaders.from_folder(root, seed=0, size=20, bs=4, num_workers=0).preload()
    assert dls.train._store is None and dls.train._store_refused == torch.device("cpu")  # auto: not on a CPU
    dls.train.device_cache = True
    _epoch(dls.train, 1)
    assert dls.train._store is not None
