#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks for the full test suite: Debian's PyTorch and NumPy, used by
# tests as independent reference implementations. Without root (or apt) it says what is missing; the tests that
# need them then report themselves as skipped with that reason.
set -uo pipefail
packages=(python3 python3-numpy python3-torch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing ${missing[*]} (reference implementations for the tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${missing[*]}; reference tests will be skipped"
else
  echo "note: ${missing[*]} not installed (needs root and apt); reference tests will be skipped"
fi
exit 0
