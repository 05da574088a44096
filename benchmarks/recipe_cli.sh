#!/usr/bin/env bash
# `unfreeze train` with the recommended recipe vs an older checkout's `unfreeze train` vs fastai's
# fine_tune(2), one after the other, one torch thread each, on the benchmark's Fashion-MNIST
# 2,000/1,000 split at 64 px; prints each process's final line and its wall/CPU seconds.
# Usage: bash benchmarks/recipe_cli.sh [OLD_SRC]   (OLD_SRC: the src/ of an older checkout; optional)
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import common; print(common.build_dataset(common.Setup()))")
out=benchmarks/.work/recipe_cli
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 BENCH_THREADS=1
timed() { local name=$1; shift; /usr/bin/time -f "$name: wall %e s, CPU %U+%S s" "$@" > "$out/$name.log" 2>&1 || true
          grep -h "^Final\|BENCH_RESULT\|wall .* CPU" "$out/$name.log" | cut -c1-200; }
timed recipe .venv/bin/python -m unfreeze train "$data" --size 64 --out "$out/recipe" --overwrite
if [ -n "${1:-}" ]; then
    timed before env PYTHONPATH="$1" .venv/bin/python -m unfreeze train "$data" --size 64 --out "$out/before" --overwrite
fi
timed fastai .venv-fastai/bin/python benchmarks/run_fastai.py --scenario fine_tune --seed 0
