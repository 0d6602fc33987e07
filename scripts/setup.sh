#!/usr/bin/env bash
# Set up ipyjobs in a virtual environment at .venv (repo root). Idempotent: a stamp of
# pyproject.toml skips pip when nothing changed.
#
#   scripts/setup.sh run    the package with its speech, OCR and JupyterLab/Voila extras, and
#                           (as root) ffmpeg and tesseract-ocr(-eng)
#   scripts/setup.sh test   the same plus the dev extra, and (as root) what the tests use:
#                           espeak-ng, fonts, chromium and chromium-driver
set -euo pipefail
profile="${1:-run}"
cd "$(dirname "$0")/.."

case "$profile" in
  run) extras="speech,ocr,lab"; debs="ffmpeg tesseract-ocr tesseract-ocr-eng" ;;
  test) extras="speech,ocr,dev"; debs="ffmpeg tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd espeak-ng fonts-dejavu-core fonts-liberation chromium chromium-driver poppler-utils ghostscript" ;;
  *) echo "usage: scripts/setup.sh [run|test]" >&2; exit 2 ;;
esac

missing_debs=""
for deb in $debs; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" \
    || missing_debs="$missing_debs $deb"
done
if [ -n "$missing_debs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages:$missing_debs"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_debs >/dev/null
  else
    echo "setup: missing Debian packages:$missing_debs (run as root, or: sudo apt-get install$missing_debs)" >&2
    exit 1
  fi
fi

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.ipyjobs-$profile-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  # pip's status survives the filter (pipefail); the filter drops noise about absent local indexes.
  pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
  # A CPU build of torch first: openai-whisper would otherwise pull the newest CUDA build (GBs).
  # Users are not pinned to this version; it is the one this kind of machine provides.
  .venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
  pip install -e ".[$extras]"
  .venv/bin/python -c "import ipyjobs, anyio, httpx" # fail here, not later, if pip did not
  rm -f .venv/.ipyjobs-"$profile"-*
  touch "$stamp"
fi
