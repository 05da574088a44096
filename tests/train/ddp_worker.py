"""Run by tests/train/test_distributed.py under `torchrun --nproc_per_node=2` on the CPU (gloo)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from unfreeze import ImageDataLoaders, distributed, vision_learner


def main(root: str, out: str) -> None:
    torch.set_num_threads(1)
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", metrics=["error_rate", "accuracy"], pretrained=False, seed=0,
                           quiet=True, grad_accum=2)
    learn.fine_tune(2, base_lr=1e-2)
    result = learn.lr_find(num_it=8)
    rank = distributed.rank()
    save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    Path(f"{out}/rank{rank}.json").write_text(json.dumps({
        "world_size": distributed.world_size(),
        "history": learn.recorder.history,
        "losses": learn.recorder.losses,
        "valley": result.valley,
        "n_valid_seen": len(learn.collect_logits(dls.valid)[1]),
        "train_batches": len(dls.train),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
