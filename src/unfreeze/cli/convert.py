"""`unfreeze convert-fastai`: fastai vision_learner weights (.pth) to a .unfreeze export.

The command maps its arguments one to one onto `unfreeze.inference.convert_fastai`; a file it cannot
convert (a pickled Learner, another model, a wrong --arch or --vocab) is a user error, one line and
exit code 2, as for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from unfreeze.cli.options import _image_size

__all__ = ["add_convert_fastai", "command_convert_fastai"]

_CONVERT_FASTAI_EXAMPLES = """\
examples:
  unfreeze convert-fastai models/stage-2.pth --arch torchvision:resnet34 --vocab cat,dog
  unfreeze convert-fastai weights.pth --arch convnext_tiny --vocab a,b,c --size 192 --out pets.unfreeze

WEIGHTS is fastai's learn.save(name) file (models/name.pth) or torch.save(learn.model.state_dict(), ...).
A fastai export.pkl is a pickle and is refused: in fastai, load it (only if you trust it) and save the
weights as above. --arch is the architecture of the fastai model ("torchvision:resnet34" for fastai's
resnet34, a timm name otherwise), --vocab learn.dls.vocab in its order, --size the training image size.
"""


def _vocab(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected class names separated by commas, such as cat,dog; got {text!r}")
    return names


def add_convert_fastai(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Add the convert-fastai subcommand through the parser's `command(name, help, epilog)` factory."""
    parser = command("convert-fastai", "turn fastai vision_learner weights (.pth) into a .unfreeze export",
                     _CONVERT_FASTAI_EXAMPLES)
    parser.add_argument("weights", metavar="WEIGHTS", type=Path, help="fastai weights: models/<name>.pth")
    parser.add_argument("--arch", required=True, help="the fastai model's architecture, e.g. torchvision:resnet34")
    parser.add_argument("--vocab", required=True, type=_vocab, help="class names in learn.dls.vocab order: a,b,c")
    parser.add_argument("--size", type=_image_size, default=224, help="the training image size (default: 224)")
    parser.add_argument("--resize-method", choices=("crop", "pad", "squish"), default="crop",
                        help="fastai's Resize method (default: crop)")
    parser.add_argument("--out", type=Path, default=Path("model.unfreeze"),
                        help="the export to write (default: model.unfreeze)")
    parser.set_defaults(handler=command_convert_fastai)


def command_convert_fastai(args: argparse.Namespace) -> int:
    """Convert, then say where the export went and how to use it."""
    from unfreeze.inference import convert_fastai

    out = convert_fastai(args.weights, args.arch, args.out, vocab=args.vocab, size=args.size,
                         resize_method=args.resize_method)
    print(f"Wrote {out} ({len(args.vocab)} classes, {args.arch}, {args.size} px). "
          f"Predict with: unfreeze predict {out} IMAGE")
    return 0
