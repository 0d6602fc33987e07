#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, with ruff and mypy first: the tests in
# tests/ and the notebooks in notebooks/, executed top to bottom by nbval (cells marked NBVAL_CHECK_OUTPUT must
# reproduce their saved output; notebooks/conftest.py serves the test models on 127.0.0.1).
# Arguments go to pytest; when none of them names a file or folder, tests/ and notebooks/ run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check ipyjobs tests bench notebooks
.venv/bin/mypy ipyjobs
paths=0
for arg in "$@"; do
  case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && paths=1 ;; esac
done
[ "$paths" = 1 ] || set -- tests notebooks "$@"
exec .venv/bin/python -m pytest -q --nbval-lax --nbval-current-env "$@"
