#!/usr/bin/env bash
# Installs what cardlink needs on a Debian machine, only where missing: Prosody (+ prosody-modules for
# mod_cloud_notify), python3-slixmpp (the independent test client), openssl, and the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prosody >/dev/null 2>&1 || need_apt+=(prosody)
[ -d /usr/lib/prosody/modules/mod_cloud_notify ] || need_apt+=(prosody-modules)
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || need_apt+=(python3-slixmpp)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} from Debian"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # The package may start a system Prosody on 5222/5347; cardlink's runs use their own, so stop it.
  $SUDO systemctl stop prosody >/dev/null 2>&1 || $SUDO service prosody stop >/dev/null 2>&1 || true
fi

if [ ! -d node_modules/better-sqlite3/build ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi
