#!/usr/bin/env bash
# The benchmark: builds sluice and sluice-bench in release mode, then runs every case against its
# reference in the same run and prints one table (see BENCHMARKS.md).
#   scripts/bench.sh           quick mode (~100k events)
#   scripts/bench.sh --full    full mode (≥1M events)
#   scripts/bench.sh --only capture,latency
#   scripts/bench.sh --full --only capture-js,stage-js,latency-js   the JetStream cases (nats-server; see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product sluice 2>&1 | tail -n 1
swift build -c release --product sluice-bench 2>&1 | tail -n 1
exec .build/release/sluice-bench "$@"
