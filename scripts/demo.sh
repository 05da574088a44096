#!/usr/bin/env bash
# Set up the virtualenv and run the main job: fine-tune the bundled backbone on the committed sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/unfreeze demo "$@"
