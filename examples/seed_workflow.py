"""The seed workflow on the committed Fashion-MNIST sample: fine_tune, lr_find, discriminative LRs.

    .venv/bin/python examples/seed_workflow.py [OUT_DIR]

Runs offline on the CPU in a few minutes; writes its plots and the export into OUT_DIR (default
runs/example).
"""

import sys
from pathlib import Path

from unfreeze import (
    ClassificationInterpretation,
    ImageDataLoaders,
    error_rate,
    load_learner,
    sample_path,
    vision_learner,
)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example")
out.mkdir(parents=True, exist_ok=True)

dls = ImageDataLoaders.from_folder(sample_path(), size=64, bs=32, seed=0)
dls.show_batch(path=out / "batch.png")
learn = vision_learner(dls, "efficientnet_lite0", metrics=[error_rate], seed=0)  # pretrained body, frozen
learn.fine_tune(2)                                  # 1 epoch head only, then unfreeze and train all layers
result = learn.lr_find(plot=out / "lr_find.png")    # plot and suggestions
print(f"lr_find suggests {result.valley:.2e} (valley); slice for the groups: {result.slice()}")
learn.unfreeze()
learn.fit_one_cycle(2, lr_max=slice(result.valley / 100, result.valley))  # discriminative LRs
learn.recorder.plot_loss(out / "loss.png")
learn.recorder.plot_sched(out / "sched.png")
ClassificationInterpretation.from_learner(learn).plot_confusion_matrix(out / "confusion_matrix.png")
learn.export(out / "model.unfreeze")
label, index, probs = load_learner(out / "model.unfreeze").predict(dls.valid.dataset.items[0][0])
print(f"first validation image: predicted {label} ({probs[index]:.0%}); plots and export in {out}")
