#!/usr/bin/env bash
# The test command: creates or reuses .venv, installs dvd-gan with its test extra, checks
# lint and formatting with ruff, and runs the whole test suite. Extra arguments go to pytest
# (e.g. ./launch/test.sh -k models -x).
set -euo pipefail
DVD_GAN_EXTRAS=test
source "$(dirname "$0")/venv.sh"
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== pytest"; python -m pytest tests "$@"
