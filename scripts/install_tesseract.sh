#!/usr/bin/env bash
# Installs Debian's Tesseract with the language data given (default: eng), the peer that
# benchmarks/bench_infer.py runs beside our models (it skips a missing one, saying why).
# Idempotent; needs root (or sudo), otherwise prints the command.
#   bash scripts/install_tesseract.sh eng chi_sim
set -euo pipefail
LANGS=("${@:-eng}")
PACKAGES=(tesseract-ocr)
for lang in "${LANGS[@]}"; do PACKAGES+=("tesseract-ocr-${lang//_/-}"); done
have=$(tesseract --list-langs 2> /dev/null || true)
missing=0
for lang in "${LANGS[@]}"; do grep -qx "$lang" <<< "$have" || missing=1; done
if [ "$missing" = 0 ]; then
  echo "tesseract: installed with ${LANGS[*]}"
  exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install tesseract "${PACKAGES[@]}"
