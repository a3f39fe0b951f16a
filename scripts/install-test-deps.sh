#!/usr/bin/env bash
# Installs the system packages Gantry's tests need, from Debian's archive.
# and from PyPI into a virtualenv: moto (the AWS stand-in for S3, ECS and ECR),
# aiosmtpd (a mail server for the email notification tests) and pypiserver
# (a package index for the pypi deploy tests, with passlib for its logins).
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

MOTO_VERSION=5.2.5
AIOSMTPD_VERSION=1.4.6
PYPISERVER_VERSION=2.4.2
# (grep reads all of pip's output: with -q it would stop at the match, pip
# would die of SIGPIPE, and pipefail would reinstall moto on every run.)
MOTO_VENV=${GANTRY_TEST_TOOLS:-$HOME/.cache/gantry-test}/moto
if ! "$MOTO_VENV/bin/moto_server" --help >/dev/null 2>&1 \
   || ! "$MOTO_VENV/bin/pip" show moto 2>/dev/null | grep -x "Version: $MOTO_VERSION" >/dev/null \
   || ! "$MOTO_VENV/bin/pip" show aiosmtpd 2>/dev/null | grep -x "Version: $AIOSMTPD_VERSION" >/dev/null \
   || ! "$MOTO_VENV/bin/pip" show pypiserver 2>/dev/null | grep -x "Version: $PYPISERVER_VERSION" >/dev/null; then
  echo "installing moto[server]==$MOTO_VERSION, aiosmtpd==$AIOSMTPD_VERSION and pypiserver==$PYPISERVER_VERSION into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" "aiosmtpd==$AIOSMTPD_VERSION" "pypiserver[passlib]==$PYPISERVER_VERSION"
fi

# pkg-config: how libgit2's and zlib's builds look for a system copy (else
# they build their own). openssl: the command the server's tests make keys with.
# ngircd: the IRC server the IRC notification tests talk to.
packages=(pkg-config openssl busybox-static debootstrap postgresql postgresql-client git docker-registry strace chromium chromium-driver ngircd)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# npm: the npm deploy test installs what it published with the real client
# (a machine with Node.js from elsewhere has its own npm).
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing test dependencies: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged registry as a service; the tests start their own.
$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
# ... and ngIRCd; the IRC tests start their own on free ports.
$sudo systemctl disable --now ngircd >/dev/null 2>&1 || true
