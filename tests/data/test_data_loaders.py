import os
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unfreeze.data.cache as cache_module
import unfreeze.data.loaders as loaders_module
from unfreeze.data import DataError, DataWarning, ImageDataLoaders
from unfreeze.data.cache import available_memory, default_cache_bytes

OPTIONS = {"size": 16, "bs": 4, "seed": 7, "num_workers": 0}


def _epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_newcomer_path_with_the_committed_sample(sample_dir: Path, tmp_path: Path):
    dls = ImageDataLoaders.from_folder(sample_dir, size=64)
    assert dls.vocab == sorted(["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                "Sneaker", "Bag", "Ankle_boot"])
    assert (len(dls.train.dataset), len(dls.valid.dataset), dls.n_classes) == (400, 200, 10)
    saved = dls.show_batch(path=tmp_path / "batch.png")
    assert saved.exists() and Image.open(saved).size[0] > 200
    assert isinstance(dls.seed, int)


def test_batches_shapes_types_and_default_normalization(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    images, labels = next(iter(dls.train))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.long and set(labels.tolist()) <= {0, 1}
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert len(dls.train) == 3 and len(list(dls.train)) == 3  # 12 items, drop_last
    assert len(dls.valid) == 2 and sum(len(labels) for _, labels in dls.valid) == 6
    assert dls.train.dataset.labels().count(0) == 6


def test_set_normalization(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    plain, _ = next(iter(dls.valid))
    dls.set_normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    normalized, _ = next(iter(dls.valid))
    assert torch.allclose(normalized, (plain - 0.5) / 0.25, atol=1e-5)


def test_epochs_replay_exactly_and_leave_global_rngs_alone(make_image_folder):
    root = make_image_folder()
    first = ImageDataLoaders.from_folder(root, **OPTIONS)
    random.seed(0)
    torch.manual_seed(0)
    np.random.seed(0)
    states = random.getstate(), torch.get_rng_state(), np.random.get_state()[1].copy()
    run = [_epoch_batches(first.train, epoch) for epoch in range(3)]
    assert random.getstate() == states[0] and torch.equal(torch.get_rng_state(), states[1])
    assert np.array_equal(np.random.get_state()[1], states[2])
    resumed = ImageDataLoaders.from_folder(root, **OPTIONS)
    for (a_images, a_labels), (b_images, b_labels) in zip(run[2], _epoch_batches(resumed.train, 2), strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    assert not torch.equal(run[0][0][0], run[1][0][0])


def test_later_epochs_do_no_decoding(make_image_folder, monkeypatch):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    calls = []
    original = loaders_module.decode_item
    monkeypatch.setattr(loaders_module, "decode_item", lambda *args: calls.append(1) or original(*args))
    _epoch_batches(dls.train, 0)
    assert len(calls) == 12
    _epoch_batches(dls.train, 1)
    _epoch_batches(dls.train, 2)
    assert len(calls) == 12 and len(dls.train.dataset.cache) == 12


def test_a_subset_shares_the_decoded_images_and_decodes_nothing_again(make_image_folder, monkeypatch):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    dataset = dls.train.dataset
    _epoch_batches(dls.train, 0)
    dataset.dropped[5] = "not an image"  # as if file 5 had failed to decode
    calls = []
    original = loaders_module.decode_item
    monkeypatch.setattr(loaders_module, "decode_item", lambda *args: calls.append(1) or original(*args))
    part = dataset.subset([3, 0, 5])
    assert part.items == [dataset.items[3], dataset.items[0], dataset.items[5]]
    assert part.image(0) is dataset.image(3) and part.dropped == {2: "not an image"}
    assert torch.equal(part.targets, dataset.targets[[3, 0, 5]])
    assert calls == []


def test_checking_the_training_set_twice_decodes_it_once_also_past_the_cache(make_image_folder, monkeypatch):
    """The CLI checks the training set before the run directory exists, fit_recipe again: with a cache too
    small to hold it, the second check decoded every image a second time."""
    dls = ImageDataLoaders.from_folder(make_image_folder(), cache_bytes=0, **OPTIONS)
    calls = []
    original = loaders_module.decode_item
    monkeypatch.setattr(loaders_module, "decode_item", lambda *args: calls.append(1) or original(*args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the cache is full
        dls.train.check_decodable(every_class=True)
        assert len(calls) == len(dls.train.dataset) and len(dls.train.dataset.cache) == 0
        dls.train.check_decodable(every_class=True)
        assert len(calls) == len(dls.train.dataset)
        assert dls.train.dataset.subset([0, 1]).tried_all


def test_tiny_cache_budget_still_works_and_warns_once(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), cache_bytes=0, **OPTIONS)
    with pytest.warns(DataWarning, match="cache is full") as caught:
        assert len(_epoch_batches(dls.train, 0)) == len(_epoch_batches(dls.train, 1)) == 3
    assert len([w for w in caught if "cache is full" in str(w.message)]) == 1
    assert len(dls.train.dataset.cache) == 0


def test_default_cache_budget_is_a_share_of_free_memory(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    budget = dls.train.dataset.cache.max_bytes + dls.valid.dataset.cache.max_bytes
    assert 2**27 < budget <= default_cache_bytes()


@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_worker_processes_give_the_same_batches(make_image_folder, start_method: str):
    root = make_image_folder(n_train=12)
    in_process = ImageDataLoaders.from_folder(root, **OPTIONS)
    workers = ImageDataLoaders.from_folder(root, **(OPTIONS | {"num_workers": 2}))
    workers.train.worker_start_method = start_method
    torch_state = torch.get_rng_state()
    for (a_images, _), (b_images, _) in zip(in_process.train, workers.train, strict=True):
        assert torch.equal(a_images, b_images)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_shard_train_and_valid(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=7, n_valid=5), **(OPTIONS | {"bs": 2}))
    n_items = len(dls.train.dataset)
    orders = []
    for rank in range(3):
        dls.train.shard(rank, 3)
        orders.append(dls.train._order().tolist())
    assert len({len(order) for order in orders}) == 1 and len(orders[0]) == -(-n_items // 3)
    assert set().union(*orders) == set(range(n_items))
    valid_seen = []
    for rank in range(3):
        dls.valid.shard(rank, 3)
        valid_seen += dls.valid._order().tolist()
        assert len(dls.valid) == len(dls.valid._batches())
    assert sorted(valid_seen) == list(range(len(dls.valid.dataset)))  # each item exactly once
    assert len(dls.train) == len(dls.train._batches())


def test_presizing_and_resize_methods(make_image_folder):
    root = make_image_folder(size=(40, 24))
    for method in ("crop", "pad", "squish"):
        dls = ImageDataLoaders.from_folder(root, item_size=32, resize_method=method, **OPTIONS)
        assert next(iter(dls.train))[0].shape == (4, 3, 16, 16)
        assert next(iter(dls.valid))[0].shape == (4, 3, 16, 16)
        assert dls.valid.decode_uint8([0, 1]).shape == (2, 3, 32, 32)
    padded = ImageDataLoaders.from_folder(root, item_size=32, resize_method="pad", **OPTIONS)
    assert padded.valid.decode_uint8([0])[0, :, 0, 16].tolist() == [0, 0, 0]  # black bar on top


def test_test_dl_accepts_paths_arrays_tensors_and_pil(make_image_folder, tmp_path: Path, write_image):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    array = np.full((20, 30, 3), 128, dtype=np.uint8)
    items = [write_image(tmp_path / "new.jpg"), str(write_image(tmp_path / "new.png")), array,
             torch.from_numpy(array).permute(2, 0, 1), Image.fromarray(array)]
    loader = dls.test_dl(items, batch_size=8)
    (images, labels), = list(loader)
    assert images.shape == (5, 3, 16, 16) and labels.tolist() == [-1] * 5


def test_labelled_factories(tmp_path: Path, write_image):
    for breed in ("great_pyrenees", "Abyssinian"):
        for index in range(4):
            write_image(tmp_path / "pets" / f"{breed}_{index}.jpg", seed=index)
    pets = tmp_path / "pets"
    by_regex = ImageDataLoaders.from_name_re(pets, sorted(p.name for p in pets.iterdir()), r"^(.+)_\d+\.jpg$",
                                             **OPTIONS)
    # int(0.2 * 8) == 1 validation item, as fastai's RandomSplitter counts.
    assert by_regex.vocab == ["Abyssinian", "great_pyrenees"] and len(by_regex.valid.dataset) == 1
    by_func = ImageDataLoaders.from_name_func(pets, None, lambda name: "cat" if name[0].isupper() else "dog",
                                              **OPTIONS)
    assert by_func.vocab == ["cat", "dog"]
    rows = [f"{name},{name.split('_')[0]},{int(name.endswith('0.jpg'))}" for name in sorted(os.listdir(pets))]
    (pets / "labels.csv").write_text("name,label,is_valid\n" + "\n".join(rows))
    by_csv = ImageDataLoaders.from_csv(pets, fn_col="name", label_col="label", valid_col="is_valid", **OPTIONS)
    assert len(by_csv.valid.dataset) == 2 and by_csv.vocab == ["Abyssinian", "great"]


def test_seed_none_picks_a_seed_without_touching_global_rngs(make_image_folder):
    root = make_image_folder(flat=True)
    random.seed(3)
    state = random.getstate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = ImageDataLoaders.from_folder(root, valid_pct=0.2, size=16, num_workers=0)
    assert isinstance(dls.seed, int) and random.getstate() == state


def test_to_device(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS).to("cpu")
    images, labels = next(iter(dls.valid))
    assert images.device.type == labels.device.type == "cpu" == dls.device.type



def test_iteration_restores_the_torch_thread_count(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), **OPTIONS)
    before = torch.get_num_threads()
    for _ in dls.train:
        assert torch.get_num_threads() == before  # the consumer always sees its own setting
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad_batch", [0, 2])
def test_sharded_training_keeps_its_step_count_when_a_whole_batch_is_bad(make_image_folder, bad_batch: int):
    """Under DDP a rank that skipped a batch would hang the others in the gradient all-reduce."""
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=8), **(OPTIONS | {"bs": 2}))
    dls.train.shard(0, 2)
    dls.train.set_epoch(0)
    for index in dls.train._batches()[bad_batch]:
        dls.train.dataset.items[index][0].write_bytes(b"garbage, not an image")
    with pytest.warns(UserWarning, match="could not be decoded"):
        batches = list(dls.train)
    assert len(batches) == len(dls.train) == 4
    neighbour = bad_batch + 1 if bad_batch == 0 else bad_batch - 1
    assert torch.equal(batches[bad_batch][0], batches[neighbour][0])  # a good batch, repeated
    dls.train.shard(0, 1)  # a single process repeats nothing: the bad files are simply left out
    assert sum(len(labels) for _, labels in dls.train) == len(dls.train.dataset) - 2


def test_a_rank_with_no_decodable_training_image_stops_with_a_clear_error(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(n_train=8), **(OPTIONS | {"bs": 2}))
    dls.train.shard(0, 2)
    dls.train.set_epoch(0)
    for index in dls.train._order():
        dls.train.dataset.items[index][0].write_bytes(b"garbage, not an image")
    with pytest.warns(UserWarning, match="could not be decoded"), pytest.raises(DataError, match="rank 0 of 2"):
        list(dls.train)


def test_the_default_cache_budget_is_a_quarter_of_available_memory(monkeypatch):
    available = available_memory()  # Linux: MemAvailable, capped by a cgroup limit
    total = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:")).split()[1]) * 1024
    assert available is not None and 0 < available <= total
    for free, expected in ((None, 2**31), (8 * 2**30, 2 * 2**30), (100 * 2**20, 2**28)):
        monkeypatch.setattr(cache_module, "available_memory", lambda free=free: free)
        assert default_cache_bytes() == expected


class _Negate:
    def apply(self, images, targets):
        return -images, targets + 1


def test_batch_transforms_apply_in_order_until_removed(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), size=16, bs=4, seed=0, augment=False, num_workers=0)
    plain_images, plain_targets = next(iter(dls.train))
    negate = _Negate()
    dls.train.add_batch_transform(negate.apply)
    dls.train.add_batch_transform(lambda images, targets: (images * 2, targets))
    images, targets = next(iter(dls.train))
    assert torch.equal(images, -plain_images * 2) and torch.equal(targets, plain_targets + 1)
    dls.train.remove_batch_transform(negate.apply)  # a new bound method, equal to the registered one
    assert len(dls.train.batch_transforms) == 1
    assert dls.valid.batch_transforms == []  # other loaders untouched
