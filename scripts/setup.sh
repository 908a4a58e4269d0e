#!/usr/bin/env bash
# Installs what is missing, with apt-get. Safe to run again.
#   scripts/setup.sh demo   what building and the demo need: PostgreSQL 15 (server, client, libpq-dev),
#                           libsqlite3-dev and the sqlite3 shell, pkg-config, Python 3 (free ports),
#                           libnats-dev (the JetStream backend is built in) and nats-server
#                           (for scripts/demo.sh --jetstream), libcurl4-openssl-dev (the HTTP sink's TLS)
#   scripts/setup.sh        the above and what the tests add: docker-compose (only to validate
#                           docker-compose.yml), chromium (ConsoleTests load the console headless) and
#                           openssl (the TLS tests make their certificates)
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
packages=(postgresql libpq-dev libsqlite3-dev sqlite3 pkg-config python3 nats-server libnats-dev libcurl4-openssl-dev)
[ "${1:-}" = demo ] || packages+=(docker-compose chromium openssl)
for pkg in "${packages[@]}"; do
    have_pkg "$pkg" || need+=("$pkg")
done
# A PostgreSQL server from anywhere (not only the Debian package) is fine.
if [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/initdb" ]; then
    need=("${need[@]/postgresql}")
fi
need=($(printf '%s\n' "${need[@]}" | grep -v '^$' || true))
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a cluster of its own; Sluice's scripts use throwaway clusters instead.
command -v swift >/dev/null || { echo "setup: Swift 6 is required (https://swift.org/install)" >&2; exit 1; }
