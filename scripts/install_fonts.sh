#!/usr/bin/env bash
# Installs the Debian font packages the synthetic renderer draws with: serif, sans,
# mono, condensed, bold and italic faces for Latin, and sans, serif (Song/Ming) and
# Kai faces for Chinese. Idempotent: packages already installed are left alone, and
# nothing runs when all are there. Needs root (or sudo); otherwise prints the command.
#   bash scripts/install_fonts.sh           # install what is missing
#   bash scripts/install_fonts.sh --check   # list what is missing; exit 1 if anything is
# APT_GET / DPKG_QUERY override the package tools (the tests use fakes).
set -euo pipefail

LATIN=(
  fonts-dejavu-core fonts-dejavu-extra      # sans, serif, mono, condensed; bold/italic
  fonts-liberation2                         # metric clones of Arial, Times, Courier
  fonts-freefont-ttf                        # FreeSans/Serif/Mono
  fonts-urw-base35                          # Nimbus, Bookman, Century Schoolbook, Palladio ...
  fonts-crosextra-carlito fonts-crosextra-caladea   # Calibri / Cambria metrics
  fonts-open-sans fonts-lato fonts-roboto-unhinted
  fonts-linuxlibertine fonts-ebgaramond fonts-sil-gentium fonts-oldstandard
  fonts-noto-mono fonts-inconsolata fonts-hack fonts-courier-prime
)
CJK=(
  fonts-wqy-microhei fonts-wqy-zenhei       # sans (Hei)
  fonts-arphic-uming fonts-arphic-ukai      # Ming (serif) and Kai
  fonts-noto-cjk                            # Noto Sans / Serif CJK
  fonts-droid-fallback
)
PACKAGES=("${LATIN[@]}" "${CJK[@]}")
APT_GET=${APT_GET:-apt-get}
DPKG_QUERY=${DPKG_QUERY:-dpkg-query}

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$($DPKG_QUERY -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == *"install ok installed"* ]] || missing+=("$pkg")
done

if [[ "${1:-}" == "--check" ]]; then
  if ((${#missing[@]})); then echo "missing font packages: ${missing[*]}"; exit 1; fi
  echo "all ${#PACKAGES[@]} font packages are installed"; exit 0
fi
if ((${#missing[@]} == 0)); then
  echo "fonts: all ${#PACKAGES[@]} font packages are already installed"
  exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    echo "fonts: ${#missing[@]} font packages missing; as root run:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "fonts: installing ${#missing[@]} package(s): ${missing[*]}"
$sudo "$APT_GET" update -qq
DEBIAN_FRONTEND=noninteractive $sudo "$APT_GET" install -y -qq --no-install-recommends "${missing[@]}"
