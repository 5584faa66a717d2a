#!/usr/bin/env bash
# Sets everything up, lints (eslint + prettier --check), then runs the whole test suite (unit, privileged and
# end-to-end tests; run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm test
