#!/usr/bin/env bash
# Set up the virtualenv with test extras, check style, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests benchmarks scripts examples
# One thread per worker: two xdist workers with two threads each oversubscribe the 2 cores
# and make small CPU convolutions several times slower.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv/bin/python -m pytest -n 2 -q "$@"
