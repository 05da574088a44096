#!/usr/bin/env bash
# Create or refresh the repo-local virtualenv (.venv) and install unfreeze from this checkout.
# Usage: bash scripts/setup.sh [extras]    e.g. bash scripts/setup.sh test
# With the test extra, Debian's chromium is installed too (apt-get) if missing: the browser tests drive
# it through Playwright, which never downloads a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "$extras" ]; then
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
    .venv/bin/python -m pip install --quiet -e .
fi
if [[ ",$extras," == *",test,"* ]] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium
    else
        echo "setup.sh: /usr/bin/chromium is missing and apt-get needs root: the browser tests will be skipped" >&2
    fi
fi
