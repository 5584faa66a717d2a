#!/usr/bin/env bash
# The main job on the bundled example, on a fresh machine: install everything, bootstrap a Debian base image,
# build fixtures/example/Dockerfile (gcc in a builder stage, the program copied into a slim stage), run the image,
# export it to a bootable QCOW2 disk, and boot that disk in QEMU until the program's line shows on the console.
# Run it as root, or as an ordinary user (rootless: after root ran scripts/setup.sh once), with the same steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ -w . ]; then
  export TSBUILD_ROOT="${TSBUILD_ROOT:-$PWD/.tsbuild-demo}"
fi # else the user's default store, $XDG_DATA_HOME/tsbuild
repo="$PWD"
tsb() { "$repo/bin/tsbuild" "$@"; }
step() { printf '\n== %s\n' "$*" >&2; }

step "store: ${TSBUILD_ROOT:-default} ($(id -un)$([ "$(id -u)" -eq 0 ] || echo ', rootless'))"
if ! tsb inspect debian:bookworm >/dev/null 2>&1; then
  step "bootstrap debian:bookworm (mmdebstrap, from the Debian archive)"
  tsb bootstrap debian:bookworm --variant minbase
fi

step "build: tsbuild -f Dockerfile -t app:0.1 . (in fixtures/example)"
(cd fixtures/example && tsb -f Dockerfile -t app:0.1 .)
tsb images
tsb history app:0.1

step "run: tsbuild run --rm app:0.1"
tsb run --rm app:0.1

step "export: tsbuild export app:0.1 -o app.qcow2"
out="${TSBUILD_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/tsbuild}/app.qcow2"
tsb export app:0.1 -o "$out"

step "boot: tsbuild boot app.qcow2 (QEMU; KVM when it works, TCG otherwise)"
tsb boot "$out" --expect 'hello from tsbuild example' --timeout 600
step "done: the program ran as a service in the VM (disk: $out)"
