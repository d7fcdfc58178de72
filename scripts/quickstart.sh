#!/usr/bin/env bash
# Starts the whole thing on loopback: Prosody (generated from prosody.cfg.lua into run/), demo users
# alice@localhost / bob@localhost, and cardlink as cards.localhost on SQLite (run/data/cardlink.sqlite).
# Ctrl-C stops both. Ports: C2S_PORT (5222), COMPONENT_PORT (5347), METRICS_PORT (9347); RUN_DIR (./run).
set -euo pipefail
cd "$(dirname "$0")/.."
C2S_PORT="${C2S_PORT:-5222}"
COMPONENT_PORT="${COMPONENT_PORT:-5347}"
RUN_DIR="${RUN_DIR:-$PWD/run}"
DEMO_PASSWORD="${DEMO_PASSWORD:-cardlink-demo}"

# The test suite runs this script from an installed and built tree (QUICKSTART_SKIP_BUILD=1): node_modules/
# and dist/ must not be rewritten under the running tests.
if [ "${QUICKSTART_SKIP_BUILD:-}" != 1 ]; then
  bash scripts/ensure-deps.sh
  echo "==> building"
  npm run --silent build
fi

mkdir -p "$RUN_DIR/data"
[ -s "$RUN_DIR/secret" ] || (openssl rand -hex 24 > "$RUN_DIR/secret")
SECRET="$(cat "$RUN_DIR/secret")"
for port in "$C2S_PORT" "$COMPONENT_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is taken (a system Prosody? try: service prosody stop, or C2S_PORT=/COMPONENT_PORT=)" >&2
    exit 1
  fi
done

node dist/scripts/prosody-config.js "$RUN_DIR/prosody.cfg.lua" "$(cat <<JSON
{"template":"prosody.cfg.lua","runDir":"$RUN_DIR","host":"localhost","componentDomain":"cards.localhost",
 "secret":"$SECRET","c2sPort":$C2S_PORT,"componentPort":$COMPONENT_PORT}
JSON
)"

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  # cardlink first (it closes its stream cleanly while Prosody is still there), then Prosody.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
}
trap cleanup INT TERM EXIT

echo "==> starting Prosody (log: $RUN_DIR/prosody.log)"
prosody --config "$RUN_DIR/prosody.cfg.lua" -F >"$RUN_DIR/prosody.stdout" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$C2S_PORT") 2>/dev/null && break
  sleep 0.1
done

for u in alice bob; do
  prosodyctl --config "$RUN_DIR/prosody.cfg.lua" register "$u" localhost "$DEMO_PASSWORD" >/dev/null 2>&1 || true
done

echo "==> starting cardlink (log: $RUN_DIR/cardlink.log)"
CARDLINK_DOMAIN=cards.localhost CARDLINK_SECRET="$SECRET" CARDLINK_SERVICE="xmpp://127.0.0.1:$COMPONENT_PORT" \
  CARDLINK_SERVED_HOSTS=localhost CARDLINK_DATA_DIR="$RUN_DIR/data" CARDLINK_ADMINS=alice@localhost \
  CARDLINK_METRICS_PORT="${METRICS_PORT:-9347}" \
  node dist/component/main.js >"$RUN_DIR/cardlink.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q '"event":"connected"' "$RUN_DIR/cardlink.log" 2>/dev/null && break
  sleep 0.1
done
grep -q '"event":"connected"' "$RUN_DIR/cardlink.log" || { echo "cardlink did not connect; see $RUN_DIR/cardlink.log" >&2; exit 1; }

cat <<EOT

cardlink is running.
  XMPP (c2s):   127.0.0.1:$C2S_PORT, domain localhost, no TLS (loopback only)
  users:        alice@localhost and bob@localhost, password "$DEMO_PASSWORD" (alice is a cardlink admin)
  component:    cards.localhost — try disco or the ad-hoc commands on it from any XMPP client
  metrics:      http://127.0.0.1:${METRICS_PORT:-9347}/metrics
  logs:         $RUN_DIR/prosody.log, $RUN_DIR/cardlink.log
Press Ctrl-C to stop both.
EOT
wait -n "${PIDS[@]}"
