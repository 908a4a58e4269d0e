#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL, the embedded topic log and an SQLite target.
# It builds sluice, starts a cluster with some rows, runs `sluice run`, writes a stream of changes,
# kills the daemon with SIGKILL mid-stream and restarts it, then checks the target against the source.
#   KEEP=1 scripts/demo.sh   leaves the cluster and files in place to explore
#   WATCH=1 scripts/demo.sh  waits for Enter before the SIGKILL and before the end, to follow it in the
#                            console (the URL is printed; see docs/console.md)
#   scripts/demo.sh --jetstream   topics in a local three-node NATS JetStream cluster (replicas 3)
#                                 instead of the embedded log; a NATS node is killed with the daemon
set -euo pipefail
jetstream=0
[ "${1:-}" = "--jetstream" ] && jetstream=1
cd "$(dirname "$0")/.."
scripts/setup.sh demo
echo "==> building sluice (release)"
swift build -c release --product sluice 2>&1 | tail -n 1
bin=$PWD/.build/release/sluice

demo=$(mktemp -d /tmp/sluice-demo.XXXXXX)
chmod 755 "$demo"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
console_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pause() { [ "${WATCH:-}" = 1 ] && [ -t 0 ] && read -r -p "   $1 — press Enter " _ || true; }
daemon=""
nats_pids=()
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept: $demo (stop the cluster with: scripts/pg-cluster.sh stop $demo/postgres)"
    else
        scripts/pg-cluster.sh stop "$demo/postgres"
        rm -rf "$demo"
    fi
}
trap cleanup EXIT

echo "==> starting a throwaway PostgreSQL on 127.0.0.1:$port"
url=$(scripts/pg-cluster.sh start "$demo/postgres" "$port")
psql -q "$url" <<'SQL'
CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL, updated_at timestamptz DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, account_id int NOT NULL, amount int NOT NULL, status text NOT NULL);
INSERT INTO accounts (owner, balance) SELECT 'owner-' || i, 1000 FROM generate_series(1, 500) i;
INSERT INTO orders (account_id, amount, status) SELECT 1 + i % 500, i % 97, 'new' FROM generate_series(1, 2000) i;
SQL

topics_section=""
if [ "$jetstream" = 1 ]; then
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    client=() route=()
    for k in 1 2 3; do client+=("$(free_port)"); route+=("$(free_port)"); done
    start_nats() {  # node index 0..2
        local k=$1 routes=""
        for j in 0 1 2; do [ "$j" != "$k" ] && routes+="${routes:+,}nats://127.0.0.1:${route[$j]}"; done
        nats-server -js -sd "$demo/nats$k" -a 127.0.0.1 -p "${client[$k]}" --cluster "nats://127.0.0.1:${route[$k]}" \
            --routes "$routes" --cluster_name demo --name "n$k" >>"$demo/nats$k.log" 2>&1 &
        nats_pids[$k]=$!
    }
    echo "==> starting a three-node NATS JetStream cluster on 127.0.0.1:${client[0]},${client[1]},${client[2]}"
    for k in 0 1 2; do start_nats "$k"; done
    for k in 0 1 2; do
        for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${client[$k]}") 2>/dev/null && break; sleep 0.1; done
    done
    topics_section="topics: {backend: jetstream, replicas: 3, servers: [nats://127.0.0.1:${client[0]}, nats://127.0.0.1:${client[1]}, nats://127.0.0.1:${client[2]}]}"
fi

cat > "$demo/sluice.yml" <<YAML
data_dir: $demo/data
metrics: {listen: "127.0.0.1:$console_port"}
$topics_section
sources:
  - name: app
    type: postgres
    url: $url
    tables: [public.accounts, public.orders]
sinks:
  - name: local
    type: sqlite
    path: $demo/replica.db
    topics: [app]
YAML
echo "==> config: $demo/sluice.yml"
cat "$demo/sluice.yml"

start_daemon() {
    "$bin" run --config "$demo/sluice.yml" >>"$demo/sluice.log" 2>&1 &
    daemon=$!
}
counts() {
    local src dst
    src=$(psql -qtA "$url" -c "SELECT (SELECT count(*) FROM accounts) || ' accounts, ' || (SELECT count(*) FROM orders) || ' orders, balance ' || (SELECT sum(balance) FROM accounts)")
    dst=$(sqlite3 "$demo/replica.db" "SELECT (SELECT count(*) FROM accounts) || ' accounts, ' || (SELECT count(*) FROM orders) || ' orders, balance ' || (SELECT sum(balance) FROM accounts)" 2>/dev/null || echo "(not created yet)")
    printf '   source: %-45s target: %s\n' "$src" "$dst"
}
workload() {
    # Transfers between accounts (the total never changes), new orders, status changes, deletions.
    for _ in $(seq 1 "$1"); do
        psql -q "$url" <<'SQL'
BEGIN;
WITH pick AS (SELECT 1 + (random() * 499)::int AS a, 1 + (random() * 499)::int AS b, (random() * 50)::int AS amount)
UPDATE accounts SET balance = balance + CASE WHEN id = (SELECT a FROM pick) THEN -(SELECT amount FROM pick) ELSE (SELECT amount FROM pick) END,
                    updated_at = now()
WHERE id IN ((SELECT a FROM pick), (SELECT b FROM pick)) AND (SELECT a FROM pick) <> (SELECT b FROM pick);
INSERT INTO orders (account_id, amount, status) SELECT 1 + (random() * 499)::int, (random() * 100)::int, 'new' FROM generate_series(1, 20);
UPDATE orders SET status = 'shipped' WHERE id IN (SELECT id FROM orders WHERE status = 'new' ORDER BY random() LIMIT 10);
DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT 5);
COMMIT;
SQL
    done
}

echo "==> sluice run: initial snapshot, then streaming (log: $demo/sluice.log)"
start_daemon
echo "==> console: http://127.0.0.1:$console_port/ (sluice status --config $demo/sluice.yml --watch in a terminal)"
# The initial snapshot reaches the target (a new replicated stream first elects its leader).
for _ in $(seq 1 120); do
    [ "$(sqlite3 "$demo/replica.db" "SELECT count(*) FROM accounts" 2>/dev/null || echo 0)" -ge 500 ] && break
    sleep 0.5
done
counts
echo "==> writing changes while sluice runs"
for round in 1 2 3; do workload 20; counts; done
pause "the console shows the pipeline streaming"
echo "==> SIGKILL the daemon mid-stream, keep writing, restart it"
workload 10 &
writer=$!
sleep 0.3
kill -9 "$daemon"; wait "$daemon" 2>/dev/null || true
echo "   killed pid $daemon"
if [ "$jetstream" = 1 ]; then
    kill -9 "${nats_pids[1]}"; wait "${nats_pids[1]}" 2>/dev/null || true
    echo "   killed NATS node n1 too (the stream keeps a quorum of two); it rejoins below"
fi
wait "$writer"
workload 20
counts
start_daemon
echo "   restarted as pid $daemon"
[ "$jetstream" = 1 ] && start_nats 1 && echo "   restarted NATS node n1"
for _ in $(seq 1 120); do
    sleep 0.5
    src=$(psql -qtA "$url" -c "SELECT md5(string_agg(id || ':' || balance, ',' ORDER BY id)) FROM accounts")
    dst=$(sqlite3 "$demo/replica.db" "SELECT group_concat(id || ':' || balance, ',') FROM (SELECT id, balance FROM accounts ORDER BY id)" | tr -d '\n' | md5sum | cut -d' ' -f1)
    so=$(psql -qtA "$url" -c "SELECT count(*) || '/' || sum(amount) FROM orders")
    do=$(sqlite3 "$demo/replica.db" "SELECT count(*) || '/' || sum(amount) FROM orders")
    [ "$src" = "$dst" ] && [ "$so" = "$do" ] && break
done
counts
if [ "$src" = "$dst" ] && [ "$so" = "$do" ]; then
    echo "==> target equals source: every change arrived exactly once, across a SIGKILL"
else
    echo "==> target differs from source; see $demo/sluice.log" >&2
    exit 1
fi
pause "the console is back with the restarted daemon (its charts go on from before the kill)"
echo "==> the newest transaction in the topic (sluice tail app --config $demo/sluice.yml -n 1):"
"$bin" tail app --config "$demo/sluice.yml" -n 1 | head -n 6 | cut -c1-150
echo "   …"
