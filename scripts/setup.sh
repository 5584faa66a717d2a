#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for tsbuild: system packages, npm dependencies, the compiled CLI.
# Idempotent: packages already installed are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # store interop and base images
  skopeo umoci mmdebstrap debootstrap busybox-static ca-certificates
  # compression peers and archive tools
  pigz zstd xz-utils bzip2 file
  # runtime and union mounts
  runc uidmap iproute2 attr libcap2-bin util-linux
  # docker interop (docker load/run in tests, peers in benchmarks) and the distribution registry
  docker.io docker-registry buildah
  # disk images and booting
  qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin grub-common extlinux syslinux-common
  mtools dosfstools fdisk gdisk e2fsprogs
  # registry tests (htpasswd -B) and benchmarks
  apache2-utils hyperfine
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "setup: Node.js >= 20.19 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "setup: done ($(node bin/tsbuild.js --version))" >&2
