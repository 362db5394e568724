#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver, which the web page's browser test drives
# through selenium (tests/test_serve_browser.py; it skips, saying why, without them).
# Idempotent; needs root (or sudo), otherwise prints the command.
set -euo pipefail
PACKAGES=(chromium chromium-driver)
if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then
  echo "browser: chromium and chromedriver are installed"
  exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install browser "${PACKAGES[@]}"
