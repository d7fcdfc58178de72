#!/usr/bin/env bash
# Installs what cardlink needs on a Debian machine, only where missing: Prosody (+ prosody-modules for
# mod_cloud_notify), python3-slixmpp (the independent test client), openssl, and the npm dependencies; with
# --with-ejabberd (scripts/test.sh) also ejabberd, the second server the tests run against; and PostgreSQL 15
# (the contract suite's second backend, a throwaway cluster per run: test/harness/postgres.ts).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prosody >/dev/null 2>&1 || need_apt+=(prosody)
[ -d /usr/lib/prosody/modules/mod_cloud_notify ] || need_apt+=(prosody-modules)
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || need_apt+=(python3-slixmpp)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x /usr/lib/postgresql/15/bin/postgres ] || [ -n "${CARDLINK_TEST_PG_URL:-}" ] || need_apt+=(postgresql)
if [ "${1:-}" = "--with-ejabberd" ] && [ ! -x /usr/sbin/ejabberdctl ]; then need_apt+=(ejabberd); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} from Debian"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # A freshly installed Prosody / ejabberd may start a system service on 5222/5347; cardlink's runs use their
  # own (ejabberd as the ejabberd user with a per-run config: test/harness/ejabberd.ts; PostgreSQL a per-run
  # cluster on a free port: test/harness/postgres.ts), so the services this
  # script just installed are stopped and disabled. Services installed before are left alone.
  for svc in "${need_apt[@]}"; do
    [ "$svc" = prosody ] || [ "$svc" = ejabberd ] || [ "$svc" = postgresql ] || continue
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

if [ ! -d node_modules/better-sqlite3/build ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
