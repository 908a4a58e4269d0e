#!/usr/bin/env bash
# Installs what building, the demo and the tests need, if it is missing: PostgreSQL 15 (server,
# client, libpq-dev), libsqlite3-dev, the sqlite3 shell, pkg-config, Python 3, docker-compose
# (used only to validate docker-compose.yml), and nats-server and libnats-dev (the JetStream topic
# backend and its tests). Safe to run again.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in postgresql libpq-dev libsqlite3-dev sqlite3 pkg-config python3 docker-compose nats-server libnats-dev; do
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
