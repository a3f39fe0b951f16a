#!/usr/bin/env bash
# Builds the container images Gantry's tests run, without pulling anything
# (no registry is reachable): a busybox image from scratch, and a Debian image
# with git, sh and python3 (with setuptools and wheel, to build distributions)
# from debootstrap. Images are cached by tag: bump the tag when what goes into
# an image changes.
set -euo pipefail

BUSYBOX_IMAGE=gantry-test/busybox:1
DEBIAN_IMAGE=gantry-test/debian:bookworm-2
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$BUSYBOX_IMAGE"; then
  echo "building $BUSYBOX_IMAGE from Debian's busybox-static"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp /bin/busybox "$ctx/busybox"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp", "/root"]
RUN ["/bin/busybox", "--install", "-s"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
DOCKERFILE
  docker build -q -t "$BUSYBOX_IMAGE" --label gantry.test=1 "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi
docker run --rm "$BUSYBOX_IMAGE" sh -c 'echo busybox image ok' >/dev/null

# A service for the tests: busybox's httpd answering on port 8000.
WEB_IMAGE=gantry-test/web:1
if ! have "$WEB_IMAGE"; then
  echo "building $WEB_IMAGE"
  ctx=$(mktemp -d)
  printf 'FROM %s\nRUN mkdir -p /www && echo "hello from the web service" > /www/index.html\nEXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n' "$BUSYBOX_IMAGE" > "$ctx/Dockerfile"
  docker build -q -t "$WEB_IMAGE" --label gantry.test=1 "$ctx" >/dev/null
  rm -rf "$ctx"
fi

if ! have "$DEBIAN_IMAGE"; then
  echo "building $DEBIAN_IMAGE with debootstrap (a few minutes, once)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=git,python3,python3-setuptools,python3-wheel,ca-certificates bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi
docker run --rm "$DEBIAN_IMAGE" sh -c 'git --version && python3 -c "import setuptools, wheel"' >/dev/null
# Node 18 from Debian bookworm (nodejs + npm), tagged as the `node:18-alpine`
# that pipeline-examples/node-elasticbeanstalk builds FROM: the delivery tests
# run that example's real `npm install` / `npm test` without pulling the
# official image. npm's Debian dependencies are ~30k files, and on a
# fuse-overlayfs engine every build step walks them all (~10 s a step), so
# the image keeps only the packages npm opens for install/ci/test/run/pack (traced
# with strace), is checked with those commands, and falls back to the whole
# set if the check fails. npm is told it is offline (no registry here).
NODE_IMAGE=gantry-test/node:18-3
NODE_ENV_VARS='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin npm_config_offline=true npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false'
if ! have "$NODE_IMAGE"; then
  echo "building $NODE_IMAGE with debootstrap (a few minutes, once)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=nodejs,ca-certificates bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  # npm's dependencies do not configure inside debootstrap; apt in the chroot orders them.
  chroot "$root" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm && apt-get clean' >/dev/null
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/usr/share/info
  mkdir -p "$root/probe"
  printf '{"name":"probe","version":"1.0.0","private":true,"scripts":{"start":"node -e 0","test":"node -e 0"}}\n' > "$root/probe/package.json"
  npm_check='cd /probe && export npm_config_offline=true npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false && npm install >/dev/null && npm install --omit=dev >/dev/null && npm ci >/dev/null && npm test >/dev/null && npm run >/dev/null && npm pack >/dev/null 2>&1 && npm --version >/dev/null'
  if command -v strace >/dev/null && strace -f -qq -e trace=openat,stat,newfstatat,statx,access,readlink -o "$root/trace" chroot "$root" sh -c "$npm_check"; then
    grep -o '"/usr/share/nodejs/[^/"]*' "$root/trace" | sed 's|^"/usr/share/nodejs/||' | sort -u > "$root/keep"
    mkdir "$root/pruned"
    for d in "$root"/usr/share/nodejs/*; do
      grep -qxF "$(basename "$d")" "$root/keep" || mv "$d" "$root/pruned/"
    done
    if ! chroot "$root" sh -c "rm -rf /probe/node_modules /probe/package-lock.json && $npm_check"; then
      echo "the pruned npm does not work; keeping every package"
      mv "$root"/pruned/* "$root/usr/share/nodejs/"
    fi
    rm -rf "$root/pruned" "$root/trace" "$root/keep"
  fi
  rm -rf "$root/probe"
  tar -C "$root" -c . | docker import -c "$NODE_ENV_VARS" -c 'CMD ["/bin/bash"]' - "$NODE_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi
docker tag "$NODE_IMAGE" node:18-alpine
docker run --rm node:18-alpine sh -c 'node --version && npm --version' >/dev/null

echo "test images ready: $BUSYBOX_IMAGE $WEB_IMAGE $DEBIAN_IMAGE $NODE_IMAGE (as node:18-alpine)"
