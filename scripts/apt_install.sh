# Sourced by the install scripts: apt_install LABEL PACKAGE... installs Debian packages
# as root or with password-less sudo; otherwise prints the command and returns 1.
apt_install() {
  local label=$1 sudo=""
  shift
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then
      sudo="sudo -n"
    else
      echo "$label: run as root: apt-get install -y $*" >&2
      return 1
    fi
  fi
  $sudo apt-get update -q > /dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}
