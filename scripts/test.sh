#!/usr/bin/env bash
# Set up the virtualenv with test extras, check style, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests benchmarks scripts examples
exec .venv/bin/python -m pytest -n 2 -q "$@"
