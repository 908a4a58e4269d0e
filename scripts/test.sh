#!/usr/bin/env bash
# Runs every test. Integration tests start their own throwaway PostgreSQL clusters (as the postgres
# user when run as root) and real SQLite files, and drive the real `sluice` binary.
#   scripts/test.sh                 all tests
#   scripts/test.sh --filter NAME   a subset (any `swift test` arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
