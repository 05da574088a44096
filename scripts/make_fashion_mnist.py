"""Build an image-folder dataset (train/<class>/*.png, valid/<class>/*.png) from Fashion-MNIST idx files.

By default both train and valid are drawn, disjoint and class-balanced, from the idx *training* split,
as the benchmarks need; --test writes all 60,000 training images and uses the 10,000 t10k images as
valid. The idx files come from Debian's dataset-fashion-mnist package.

    python scripts/make_fashion_mnist.py --out data/fashion --n-train 2000 --n-valid 1000 --seed 0
    python scripts/make_fashion_mnist.py --out data/fashion-full --test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from unfreeze.data import read_idx

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")


def balanced_indices(labels: np.ndarray, counts: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """For each requested count, disjoint index sets with that many images spread evenly over classes."""
    per_class = [rng.permutation(np.flatnonzero(labels == label)) for label in range(len(CLASSES))]
    chosen, start = [], np.zeros(len(CLASSES), dtype=int)
    for count in counts:
        quota = [count // len(CLASSES) + (label < count % len(CLASSES)) for label in range(len(CLASSES))]
        picks = []
        for label, n_label in enumerate(quota):
            if start[label] + n_label > len(per_class[label]):
                raise SystemExit(f"class {CLASSES[label]} has only {len(per_class[label])} images")
            picks.append(per_class[label][start[label] : start[label] + n_label])
            start[label] += n_label
        chosen.append(np.sort(np.concatenate(picks)))
    return chosen


def write_split(out: Path, split: str, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                size: int | None) -> None:
    for name in CLASSES:
        (out / split / name).mkdir(parents=True, exist_ok=True)
    for index in indices:
        image = Image.fromarray(images[index], mode="L")
        if size and size != image.width:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        image.save(out / split / CLASSES[labels[index]] / f"{index:05d}.png", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=2000, help="training images (class-balanced)")
    parser.add_argument("--n-valid", type=int, default=1000, help="validation images (class-balanced)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the selection")
    parser.add_argument("--size", type=int, default=None, help="upscale to SIZE px (default: keep 28 px)")
    parser.add_argument("--test", action="store_true", help="all 60k train, t10k (10k) as valid")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the idx .gz files")
    args = parser.parse_args(argv)

    images = read_idx(args.source / "train-images-idx3-ubyte.gz")
    labels = read_idx(args.source / "train-labels-idx1-ubyte.gz")
    if args.test:
        write_split(args.out, "train", images, labels, np.arange(len(labels)), args.size)
        test_images = read_idx(args.source / "t10k-images-idx3-ubyte.gz")
        test_labels = read_idx(args.source / "t10k-labels-idx1-ubyte.gz")
        write_split(args.out, "valid", test_images, test_labels, np.arange(len(test_labels)), args.size)
    else:
        rng = np.random.default_rng(args.seed)
        train_indices, valid_indices = balanced_indices(labels, [args.n_train, args.n_valid], rng)
        write_split(args.out, "train", images, labels, train_indices, args.size)
        write_split(args.out, "valid", images, labels, valid_indices, args.size)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
