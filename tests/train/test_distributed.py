"""Two processes on the CPU with gloo, launched by torchrun, against a single-process evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unfreeze import ImageDataLoaders, distributed, vision_learner


def test_helpers_are_no_ops_in_one_process():
    assert not distributed.is_distributed() and distributed.is_main_process()
    tensor = torch.arange(5)
    assert distributed.gather_ordered(tensor) is tensor
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert torch.equal(distributed.mean(torch.tensor(2.5)), torch.tensor(2.5))


def test_sync_bn_refused_without_gpus(make_image_folder):
    dls = ImageDataLoaders.from_folder(make_image_folder(), size=16, bs=4, seed=0, num_workers=0)
    with pytest.raises(ValueError, match="sync_bn"):
        vision_learner(dls, "test_resnet", pretrained=False, sync_bn=True)


def test_two_ranks_agree_and_match_single_process(make_image_folder, tmp_path):
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(worker), str(root), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [load_file(str(out / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0]["world_size"] == 2
    # 1. identical weights on both ranks
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # Each rank trained on half of the 24 items (3 batches of 4), and validation gathered all 12.
    assert ranks[0]["train_batches"] == 3 and ranks[0]["n_valid_seen"] == 12
    assert ranks[0]["valley"] == ranks[1]["valley"]
    # 2. validation metrics equal a single-process evaluation of the same weights
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    single = vision_learner(dls, "test_resnet", metrics=["error_rate", "accuracy"], pretrained=False, quiet=True)
    single.model.load_state_dict(weights[0])
    logs = single.validate()
    last = ranks[0]["history"][-1]
    assert ranks[1]["history"][-1] == last | {"time": ranks[1]["history"][-1]["time"]}
    assert last["error_rate"] == pytest.approx(logs["error_rate"])
    assert last["valid_loss"] == pytest.approx(logs["valid_loss"], rel=1e-4)
    # 3. the loss falls (the logged loss is the mean over ranks, the same on both)
    losses = ranks[0]["losses"]
    assert losses == ranks[1]["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_torchrun_cli_writes_one_run_directory(make_image_folder, tmp_path):
    root = make_image_folder(classes=("ant", "bee", "cat"), n_train=8, n_valid=4)
    run = tmp_path / "runs" / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "unfreeze",
               "train", str(root), "--arch", "test_resnet", "--no-pretrained", "--size", "16", "--bs", "4",
               "--epochs", "1", "--out", str(run)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in run.parent.iterdir()] == ["run"]  # rank 1 made no run-2
    assert (run / "model.unfreeze").is_file() and (run / "summary.json").is_file()
    assert done.stdout.count("Final:") == 1  # only rank 0 prints
    history = json.loads((run / "summary.json").read_text())["history"]
    assert len(history) == 2 and len((run / "history.csv").read_text().strip().splitlines()) == 3
