#!/usr/bin/env bash
# Sets everything up and runs the main job: bootstrap a Debian base image, add a one-file app image, then show
# what the store holds and read it back. (The Dockerfile build of fixtures/example and the disk export join this
# script when `tsbuild build` and `tsbuild export` land.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export TSBUILD_ROOT="${TSBUILD_ROOT:-$PWD/.tsbuild-demo}"
tsb() { node bin/tsbuild.js "$@"; }

echo "== store: $TSBUILD_ROOT" >&2
if ! tsb inspect debian:bookworm >/dev/null 2>&1; then
  tsb bootstrap debian:bookworm --variant minbase
fi
app="$TSBUILD_ROOT/example-rootfs"
rm -rf "$app" && mkdir -p "$app"
printf '#!/bin/sh\necho "hello from the tsbuild example"\n' > "$app/hello.sh" && chmod +x "$app/hello.sh"
tsb import "$app" example:0.1 --change 'CMD ["/hello.sh"]' >/dev/null
tsb images
tsb history debian:bookworm
tsb inspect example:0.1 | head -n 30
rm -rf "$TSBUILD_ROOT/unpacked" && tsb unpack debian:bookworm "$TSBUILD_ROOT/unpacked"
echo "== unpacked debian:bookworm: $(cat "$TSBUILD_ROOT/unpacked/etc/debian_version") ($(find "$TSBUILD_ROOT/unpacked" | wc -l) paths)" >&2
skopeo inspect "oci:$TSBUILD_ROOT:debian:bookworm" | head -n 12
