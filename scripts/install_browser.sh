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
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif sudo -n true 2> /dev/null; then
  SUDO="sudo -n"
else
  echo "browser: run as root: apt-get install -y ${PACKAGES[*]}" >&2
  exit 1
fi
$SUDO apt-get update -q > /dev/null || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
