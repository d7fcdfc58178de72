#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, lints, then mocha over dist/test (unit + integration
# against a real Prosody started per suite on free loopback ports). This is what .ci/run calls.
# Then, when no arguments were given, the card, exchange and delivery suites once more against a real ejabberd
# (CARDLINK_TEST_SERVER=ejabberd, test/harness/ejabberd.ts), so every run proves cardlink on two servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --with-ejabberd
npm run --silent build
npm run --silent lint
npx mocha "$@"
if [ $# -eq 0 ]; then
  # Suites that do not depend on a Prosody module (push.test.ts needs mod_cloud_notify; cli/quickstart start
  # the shipped Prosody config). Tests inside them that are Prosody-only say so and are skipped with the reason.
  files=()
  for s in cards foundation resume commands limits metrics budget crash; do files+=("dist/test/integration/$s.test.js"); done
  echo "==> the same card, exchange and delivery suites against ejabberd"
  CARDLINK_TEST_SERVER=ejabberd npx mocha --no-config --timeout 60000 --exit \
    --reporter ./scripts/mocha-reporter.cjs "${files[@]}"
fi
