#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, with ruff first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check ipyjobs tests bench
exec .venv/bin/python -m pytest -q "$@"
