#!/usr/bin/env bash
# `unfreeze train` with the recommended recipe vs an older checkout's `unfreeze train` vs fastai's
# fine_tune(2), interleaved, on the benchmark's Fashion-MNIST 2,000/1,000 split at 64 px, then 32 px
# digits (sklearn's, 1,200/597) with both unfreeze versions; prints each process's final line and its
# wall/CPU seconds. Every process gets THREADS torch threads (default 2: the whole 2-core machine).
# Usage: [THREADS=2] [REPEATS=2] bash benchmarks/recipe_cli.sh [OLD_SRC]   (OLD_SRC: an older src/)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
repeats=${REPEATS:-2}
data=$(.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import common; print(common.build_dataset(common.Setup()))")
digits=$(.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import recipe_study; print(recipe_study.build_digits(False))")
out=benchmarks/.work/recipe_cli
mkdir -p "$out"
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads BENCH_THREADS=$threads
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads $threads; $(date -Is)"
timed() { local name=$1; shift; /usr/bin/time -f "$name: wall %e s, CPU %U+%S s" "$@" > "$out/$name.log" 2>&1 || true
          grep -h "^Final\|flip='auto'\|BENCH_RESULT\|wall .* CPU" "$out/$name.log" | cut -c1-220; }
for repeat in $(seq "$repeats"); do
    echo "--- Fashion-MNIST 64 px, repeat $repeat"
    timed recipe .venv/bin/python -m unfreeze train "$data" --size 64 --out "$out/recipe" --overwrite
    if [ -n "${1:-}" ]; then
        timed before env PYTHONPATH="$1" .venv/bin/python -m unfreeze train "$data" --size 64 --out "$out/before" --overwrite
    fi
    timed fastai .venv-fastai/bin/python benchmarks/run_fastai.py --scenario fine_tune --seed 0
done
echo "--- digits 32 px"
timed digits .venv/bin/python -m unfreeze train "$digits" --size 32 --out "$out/digits" --overwrite
if [ -n "${1:-}" ]; then
    timed digits_before env PYTHONPATH="$1" .venv/bin/python -m unfreeze train "$digits" --size 32 --out "$out/digits_before" --overwrite
fi
