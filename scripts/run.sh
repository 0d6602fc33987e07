#!/usr/bin/env bash
# Set up (idempotent) and run the ipyjobs demo on embedded defaults (SQLite store in the data
# folder, local workers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
exec .venv/bin/python -m ipyjobs.demo "$@"
