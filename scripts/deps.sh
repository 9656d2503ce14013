#!/usr/bin/env bash
# Installs the Debian packages Atelier builds against (idempotent). Sourced by scripts/run and scripts/test.
set -euo pipefail
PKGS=(libopenblas-dev libsqlite3-dev postgresql libspng-dev zlib1g-dev libturbojpeg0-dev libwebp-dev pkg-config python3 python3-venv chromium chromium-driver fonts-noto-cjk fonts-noto-color-emoji)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
command -v swift >/dev/null 2>&1 || { echo "Swift 6 toolchain not found: install it from swift.org (Debian 12) and put it on PATH" >&2; exit 1; }
