#!/usr/bin/env bash
# Set up (idempotent) and open JupyterLab on notebooks/getting-started.ipynb, on embedded
# defaults (SQLite job store in the data folder, local workers). The Voila app is one click
# away: open notebooks/app.ipynb and press "Render with Voila" (or /voila/render/notebooks/app.ipynb).
# Arguments go to `jupyter lab` (e.g. --no-browser --port 8899). The engine's terminal demo:
# .venv/bin/python -m ipyjobs.demo
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi
# root_dir: the repository, so the file browser and /voila/render/notebooks/... see all of it.
exec .venv/bin/jupyter lab notebooks/getting-started.ipynb --ServerApp.root_dir="$PWD" \
  "${as_root[@]}" "$@"
