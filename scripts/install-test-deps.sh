#!/usr/bin/env bash
# Installs the system packages Gantry's tests need, from Debian's archive.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

packages=(busybox-static debootstrap postgresql postgresql-client git)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing test dependencies: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
