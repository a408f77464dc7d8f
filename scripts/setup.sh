#!/usr/bin/env bash
# Installs what bitexact needs to build and test on a fresh Debian/Ubuntu machine: the compilers
# and libraries from Debian's packages, and the pinned PyPI packages the reference tests use.
# Idempotent; run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PACKAGES=(build-essential cmake ninja-build pkg-config ccache clang libclang-rt-dev
          nlohmann-json3-dev libpcre2-dev libutf8proc-dev libcli11-dev libfmt-dev
          libcpp-httplib-dev libgtest-dev googletest python3 python3-pip python3-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${BITEXACT_SKIP_PIP:-0}" != 1 ] && [ -f scripts/requirements-test.txt ]; then
  python3 -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
echo "setup: done"
