"""export / load_learner: round trip, contents, no pickle, atomic writes and every refusal."""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

import unfreeze
from unfreeze.data import DataError, ImageDataLoaders
from unfreeze.inference import (
    FORMAT_VERSION,
    ExportArchitectureError,
    ExportError,
    export,
    read_export_metadata,
)
from unfreeze.models import UnknownArchitectureError, create_model
from unfreeze.train.builders import load_learner
from unfreeze.train.learner import Learner


@pytest.fixture(scope="module")
def exported(sample_learner: Learner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_learner.export(tmp_path_factory.mktemp("export") / "model.unfreeze")


def rewrite_metadata(source: Path, target: Path, **changes: object) -> Path:
    """Copy an export with some metadata fields changed (a forged or future file)."""
    metadata = read_export_metadata(source)
    for key, value in changes.items():
        if key == "arch":
            metadata["model"]["arch"] = value
        else:
            metadata[key] = value
    tensors = safetensors.torch.load_file(source)
    safetensors.torch.save_file(tensors, target, metadata={"unfreeze": json.dumps(metadata)})
    return target


class Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_export_then_load_gives_identical_predictions(sample_learner: Learner, exported: Path) -> None:
    paths = [path for path, _ in sample_learner.dls.valid.dataset.items][::4]
    loaded = load_learner(exported, device="cpu")
    expected, _ = sample_learner.get_preds(dl=sample_learner.dls.test_dl(paths))
    probs, targets = loaded.get_preds(dl=loaded.dls.test_dl(paths))
    assert torch.equal(probs, expected) and targets.tolist() == [-1] * len(paths)
    assert loaded.predict(paths[0])[:2] == sample_learner.predict(paths[0])[:2]
    rows = list(loaded.predict_batch(paths[:5]))
    assert [row["index"] for row in rows] == expected[:5].argmax(dim=1).tolist()
    # TTA works without training data: the augmentation settings travel in the export.
    dl_loaded, dl_original = loaded.dls.test_dl(paths[:20]), sample_learner.dls.test_dl(paths[:20])
    assert torch.equal(loaded.tta(dl=dl_loaded, n=2)[0], sample_learner.tta(dl=dl_original, n=2)[0])


def test_loaded_learner_needs_no_training_data(exported: Path) -> None:
    loaded = load_learner(exported)
    assert len(loaded.dls.train.dataset) == 0 and len(loaded.dls.valid.dataset) == 0
    assert loaded.device == torch.device("cpu") and not loaded.model.training


def test_export_metadata_holds_everything_needed(sample_learner: Learner, exported: Path) -> None:
    metadata = read_export_metadata(exported)
    assert metadata["format"] == "unfreeze" and metadata["format_version"] == FORMAT_VERSION
    assert metadata["library_version"] == unfreeze.__version__
    assert metadata["model"] == sample_learner.model.config()
    assert metadata["model"]["arch"] == "test_resnet" and metadata["model"]["head"]["kind"] == "fastai"
    assert metadata["vocab"] == sample_learner.dls.vocab
    assert (metadata["size"], metadata["item_size"], metadata["resize_method"]) == (32, 32, "crop")
    assert metadata["mean"] == list(sample_learner.dls.valid.mean)
    assert metadata["std"] == list(sample_learner.dls.valid.std)


def test_export_contains_no_pickle_and_loads_without_unpickling(exported: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = exported.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])  # plain JSON, then raw tensor bytes
    assert set(header["__metadata__"]) == {"unfreeze"}
    assert all(entry["dtype"] in {"F32", "I64"} for name, entry in header.items() if name != "__metadata__")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_learner must not unpickle anything")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_learner(exported)


def test_export_is_atomic(sample_learner: Learner, exported: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.unfreeze"
    target.write_bytes(exported.read_bytes())
    before = target.read_bytes()

    def interrupted(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(sample_learner, target)
    assert target.read_bytes() == before  # the old export is intact
    with pytest.raises(KeyboardInterrupt):
        export(sample_learner, tmp_path / "fresh.unfreeze")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.unfreeze"]  # no half file, no temp file


@pytest.mark.parametrize("keep", [0, 4, 8, 100, -1000])
def test_refuses_truncated_files(exported: Path, tmp_path: Path, keep: int) -> None:
    data = exported.read_bytes()
    truncated = tmp_path / "truncated.unfreeze"
    truncated.write_bytes(data[:keep])
    with pytest.raises(ExportError, match="truncated"):
        load_learner(truncated)


def test_refuses_pickles_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload(marker)))
    zipped = tmp_path / "model.pth"
    torch.save({"model": Payload(marker)}, zipped)
    whole_model = tmp_path / "whole.pt"
    torch.save(create_model("test_resnet", 2, pretrained=False), whole_model)
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": Payload(marker)}, legacy, _use_new_zipfile_serialization=False)
    for path in (raw, zipped, whole_model, legacy):
        with pytest.raises(ExportError, match=r"pickle|zip archive|not an unfreeze export"):
            load_learner(path)
    assert not marker.exists()


def test_refuses_other_format_versions_naming_both(exported: Path, tmp_path: Path) -> None:
    future = rewrite_metadata(exported, tmp_path / "future.unfreeze", format_version=FORMAT_VERSION + 1)
    with pytest.raises(ExportError, match=rf"version {FORMAT_VERSION + 1}.*version {FORMAT_VERSION}\. Upgrade"):
        load_learner(future)
    old = rewrite_metadata(exported, tmp_path / "old.unfreeze", format_version=0)
    with pytest.raises(ExportError, match=rf"version 0.*version {FORMAT_VERSION}\. Re-export"):
        load_learner(old)


def test_refuses_unknown_architecture(exported: Path, tmp_path: Path) -> None:
    forged = rewrite_metadata(exported, tmp_path / "forged.unfreeze", arch="resnet_from_the_future")
    with pytest.raises(ExportArchitectureError, match="resnet_from_the_future") as info:
        load_learner(forged)
    assert isinstance(info.value, UnknownArchitectureError) and isinstance(info.value, ExportError)


def test_refuses_plain_safetensors_and_missing_files(tmp_path: Path) -> None:
    weights = tmp_path / "weights.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, weights)
    with pytest.raises(ExportError, match="not an unfreeze export"):
        load_learner(weights)
    with pytest.raises(ExportError, match="No export"):
        load_learner(tmp_path / "nothing.unfreeze")


def test_refuses_weights_that_do_not_fit(exported: Path, tmp_path: Path) -> None:
    metadata = read_export_metadata(exported)
    state = safetensors.torch.load_file(exported)
    state.pop(next(name for name in state if name.endswith("weight")))
    broken = tmp_path / "broken.unfreeze"
    safetensors.torch.save_file(state, broken, metadata={"unfreeze": json.dumps(metadata)})
    with pytest.raises(ExportError, match="do not fit"):
        load_learner(broken)


def test_export_refuses_custom_modules(make_image_folder: Callable[..., Path], tmp_path: Path) -> None:
    dls = ImageDataLoaders.from_folder(make_image_folder(), size=16, seed=0, num_workers=0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    learn = Learner(dls, create_model(body, 2, head="linear", n_groups=2), device="cpu", quiet=True)
    with pytest.raises(ExportError, match="save_weights"):
        learn.export(tmp_path / "custom.unfreeze")
    assert not (tmp_path / "custom.unfreeze").exists()


@pytest.mark.slow
def test_efficientnet_lite0_export_size_and_load_time(sample_dir: Path, tmp_path: Path) -> None:
    """Done-when numbers: bundled ImageNet weights, 10 classes, the committed sample at 64 px."""
    import time

    dls = ImageDataLoaders.from_folder(sample_dir, size=64, seed=0, num_workers=0)
    learn = Learner(dls, create_model("efficientnet_lite0", 10, pretrained=True), device="cpu", seed=0, quiet=True)
    path = learn.export(tmp_path / "lite0.unfreeze")
    start = time.perf_counter()
    loaded = load_learner(path)
    load_seconds = time.perf_counter() - start
    paths = [p for p, _ in dls.valid.dataset.items][::2]
    assert torch.equal(loaded.get_preds(dl=loaded.dls.test_dl(paths))[0], learn.get_preds(dl=dls.test_dl(paths))[0])
    print(f"\nefficientnet_lite0 export: {path.stat().st_size / 2**20:.2f} MiB, load_learner {load_seconds:.2f} s")
    assert path.stat().st_size < 30 * 2**20 and load_seconds < 10


def test_header_size_starting_with_pickle_byte_is_not_mistaken_for_a_pickle(exported: Path, tmp_path: Path) -> None:
    """A safetensors header of 0x10280 bytes makes the file start with 0x80 0x02, like pickle protocol 2."""
    data = exported.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    body = data[8 + header_size :]
    header["__metadata__"]["pad"] = ""  # safetensors headers may carry any string metadata
    header["__metadata__"]["pad"] = " " * (0x10280 - len(json.dumps(header).encode()))
    encoded = json.dumps(header).encode()
    assert len(encoded) == 0x10280
    padded = tmp_path / "padded.unfreeze"
    padded.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)
    assert padded.read_bytes()[:2] == b"\x80\x02"
    assert read_export_metadata(padded)["format"] == "unfreeze"


def test_test_dl_with_labels_on_a_loaded_model_says_to_pass_labels(exported: Path, sample_learner: Learner) -> None:
    loaded = load_learner(exported, device="cpu")
    paths = [path for path, _ in sample_learner.dls.valid.dataset.items[:2]]
    # Not "these loaders took their labels from a table or lists": the model came from a folder.
    with pytest.raises(DataError, match=r"a model loaded with load_learner.*pass labels=\[") as caught:
        loaded.dls.test_dl(paths, with_labels=True)
    assert "table or lists" not in str(caught.value)
    labels = [Path(path).parent.name for path in paths]  # the fix the message names works
    assert loaded.dls.test_dl(paths, labels=labels).dataset.targets.tolist() == [
        loaded.dls.vocab.index(label) for label in labels]
