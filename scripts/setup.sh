#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for tsbuild: system packages (as root), npm dependencies, the compiled CLI.
# Idempotent: packages already installed are not fetched again. Run by an ordinary user (rootless mode), it checks
# that the packages are there and builds the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # store interop and base images
  skopeo umoci mmdebstrap debootstrap busybox-static ca-certificates
  # compression peers and archive tools
  pigz zstd xz-utils bzip2 file
  # runtime, union mounts, rootless (uidmap) and the RUN sandbox's network (slirp4netns)
  runc uidmap slirp4netns iproute2 attr libcap2-bin util-linux
  # docker interop (docker load/run in tests, peers in benchmarks) and the distribution registry
  docker.io docker-registry buildah podman
  # disk images and booting
  qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin grub-common extlinux syslinux-common
  mtools dosfstools fdisk gdisk e2fsprogs
  # registry tests (htpasswd -B) and benchmarks
  apache2-utils hyperfine
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    # an ordinary user (rootless mode) needs the packages too: root installs them once
    echo "setup: missing Debian packages: ${missing[*]}; run once as root: bash scripts/setup.sh" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Rootless RUN steps reach the network through slirp4netns, which opens /dev/net/tun as the user: Debian's udev
# makes it 0666 (50-udev-default.rules); a machine without udev gets the same here.
if [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi
if [ "$(id -u)" -ne 0 ] && ! grep -q "^$(id -un):" /etc/subuid 2>/dev/null; then
  echo "setup: warning: $(id -un) has no range in /etc/subuid: images with several owners will not build rootless (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un))" >&2
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "setup: Node.js >= 20.19 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ -w . ] || [ ! -f dist/cli/main.js ]; then
  npm ci --no-audit --no-fund --loglevel=error
  npm run build --silent
else
  echo "setup: $(pwd) is not yours: using its node_modules and dist as they are" >&2
fi
echo "setup: done ($(node bin/tsbuild.js --version))" >&2
