#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, lints, then mocha over dist/test (unit + integration
# against a real Prosody started per suite on free loopback ports). This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
npm run --silent build
npm run --silent lint
npx mocha "$@"
