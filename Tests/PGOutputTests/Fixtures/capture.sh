#!/usr/bin/env bash
# Captures pgoutput byte fixtures from a throwaway PostgreSQL 15 cluster.
#
# Usage: Tests/PGOutputTests/Fixtures/capture.sh [output-dir]
#
# Starts a private cluster (temp dir, 127.0.0.1 on a free port, unix socket in the temp dir,
# trust auth, wal_level=logical), creates the tables and a publication, then for each scenario
# creates a logical slot with pgoutput, runs the scenario's workload, dumps the slot with
# pg_logical_slot_peek_binary_changes (one row per pgoutput message) as lowercase hex into
# <scenario>.hex, and drops the slot. The cluster is stopped and deleted on exit.
#
# Fixture format: one pgoutput message per line, lowercase hex; lines starting with '#' are
# comments. Each slot is decoded in a fresh session, so every file carries its own Relation
# (and Type) messages. Relation OIDs and xids differ between runs: tests must not hard-code them.
#
# Needs: PostgreSQL 15 server binaries (PG_BIN, default /usr/lib/postgresql/15/bin), awk.
# As root, the cluster runs as the 'postgres' user (initdb refuses root).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR=$(cd "${1:-$SCRIPT_DIR}" && pwd)

for tool in initdb pg_ctl psql; do
    [[ -x "$PG_BIN/$tool" ]] || { echo "capture.sh: $PG_BIN/$tool not found (set PG_BIN)" >&2; exit 1; }
done
"$PG_BIN/postgres" --version | grep -q ' 15\.' || echo "capture.sh: warning: not PostgreSQL 15" >&2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pgoutput-capture.XXXXXX")
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$WORK"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
PGDATA_DIR="$WORK/data"
STARTED=0

cleanup() {
    local rc=$?
    if [[ $STARTED -eq 1 ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ $rc -ne 0 && -f "$WORK/server.log" ]]; then
        echo "capture.sh: failed; server log tail:" >&2
        tail -n 30 "$WORK/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

# A free TCP port on 127.0.0.1: nothing answers a connect.
PORT=""
for candidate in $(seq 55432 55532); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then PORT=$candidate; break; fi
done
[[ -n "$PORT" ]] || { echo "capture.sh: no free port" >&2; exit 1; }

as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null 2>&1 \
    || as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 4
fsync = off
full_page_writes = off
timezone = 'UTC'
datestyle = 'ISO, YMD'
extra_float_digits = 1
logical_decoding_work_mem = 64kB
EOF
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/server.log" -w -t 60 start >/dev/null
STARTED=1

sql() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres "$@"; }

SERVER_VERSION=$(sql -At -c "SHOW server_version")

# ---------------------------------------------------------------------------------------------
# Schema and publication (DDL itself produces no pgoutput messages).
sql <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');

-- Many column types, an enum (-> a 'Y' Type message), NULLs.
CREATE TABLE types_demo (
    id      int4 PRIMARY KEY,
    small   int2,
    big     int8,
    label   text,
    code    varchar(20),
    amount  numeric(10,2),
    flag    bool,
    ratio   float8,
    at      timestamptz,
    day     date,
    uid     uuid,
    doc     jsonb,
    raw     bytea,
    feeling mood,
    tags    int4[]
);

-- Default replica identity (primary key): inserts, plain and key-changing updates, deletes.
CREATE TABLE accounts (
    id      int4 PRIMARY KEY,
    owner   text NOT NULL,
    balance numeric(12,2)
);

-- REPLICA IDENTITY FULL: updates and deletes carry the whole old row ('O').
CREATE TABLE audit_full (
    id   int4,
    note text,
    qty  int4
);
ALTER TABLE audit_full REPLICA IDENTITY FULL;

-- No primary key, default replica identity: a Relation with no key columns (insert only).
CREATE TABLE keyless (
    a text,
    b int4
);

-- REPLICA IDENTITY NOTHING.
CREATE TABLE ident_nothing (
    id  int4 PRIMARY KEY,
    val text
);
ALTER TABLE ident_nothing REPLICA IDENTITY NOTHING;

-- REPLICA IDENTITY USING INDEX on a non-pk unique column.
CREATE TABLE ident_index (
    id   int4 NOT NULL,
    code text NOT NULL,
    val  text
);
CREATE UNIQUE INDEX ident_index_code ON ident_index (code);
ALTER TABLE ident_index REPLICA IDENTITY USING INDEX ident_index_code;

-- Truncate: a parent, a child referencing it (CASCADE), and a table with a sequence (RESTART IDENTITY).
CREATE TABLE trunc_parent (id int4 PRIMARY KEY);
CREATE TABLE trunc_child (id int4 PRIMARY KEY, parent_id int4 REFERENCES trunc_parent (id));
CREATE TABLE trunc_serial (id serial PRIMARY KEY, v text);

-- TOAST: body stored out of line, uncompressed.
CREATE TABLE docs (
    id    int4 PRIMARY KEY,
    title text,
    body  text
);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;

-- Binary tuple values.
CREATE TABLE bin_demo (
    id    int4 PRIMARY KEY,
    big   int8,
    label text,
    flag  bool,
    ratio float8,
    raw   bytea,
    empty int4
);

-- Origin.
CREATE TABLE origin_demo (id int4 PRIMARY KEY, v text);

-- Streaming.
CREATE TABLE stream_demo (id int4 PRIMARY KEY, payload text);

CREATE PUBLICATION pub FOR ALL TABLES;
SQL

# ---------------------------------------------------------------------------------------------
# Keeps a streamed dump small: inside each Stream Start .. Stream Stop block, keeps every
# non-DML message, the first two and the last DML message (I/U/D), and every DML message whose
# xid differs from the previous one; a comment line replaces each dropped run.
trim_stream() {
    awk '
    function flush(   i, n, kept, dropped, line) {
        n = nbuf; dropped = 0
        for (i = 1; i <= n; i++) {
            line = buf[i]
            if (keep[i]) {
                if (dropped > 0) { print "# ... " dropped " DML messages omitted ..."; total += dropped; dropped = 0 }
                print line
            } else dropped++
        }
        if (dropped > 0) { print "# ... " dropped " DML messages omitted ..."; total += dropped }
        nbuf = 0; dml = 0; lastxid = ""
    }
    BEGIN { inblock = 0; nbuf = 0; total = 0 }
    /^#/ { print; next }
    {
        tag = substr($0, 1, 2)
        if (!inblock) { print; if (tag == "53") { inblock = 1; nbuf = 0; dml = 0; lastdml = 0; lastxid = "" }; next }
        nbuf++; buf[nbuf] = $0; keep[nbuf] = 1
        if (tag == "49" || tag == "55" || tag == "44") {
            dml++
            xid = substr($0, 3, 8)
            keep[nbuf] = (dml <= 2 || xid != lastxid) ? 1 : 0
            if (lastdml > 0 && xid != lastxid) keep[lastdml] = 1
            lastxid = xid; lastdml = nbuf
        }
        if (tag == "45") {
            if (lastdml > 0) keep[lastdml] = 1
            inblock = 0; flush()
        }
    }
    END {
        if (nbuf > 0) flush()
        if (total > 0) print "# trimmed: " total " DML messages inside stream blocks omitted in total"
    }'
}

# capture NAME 'OPTIONS' 'DESCRIPTION' [trim] <<SQL workload SQL
capture() {
    local name=$1 options=$2 description=$3 trim=${4:-}
    local slot="fx_$name" file="$OUT_DIR/$name.hex" tmp="$WORK/$name.raw"
    sql -At -c "SELECT 1 FROM pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
    sql >/dev/null                       # the workload, from stdin
    # The SQL decoding functions stop at the flushed WAL position, and abort records are not
    # flushed at once: a checkpoint makes a trailing ROLLBACK visible.
    sql -c "CHECKPOINT"
    sql -At -c "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL, $options)" \
        >"$tmp"
    sql -At -c "SELECT pg_drop_replication_slot('$slot')" >/dev/null
    local count
    count=$(grep -c . "$tmp" || true)
    {
        echo "# $description"
        echo "# captured by capture.sh from PostgreSQL $SERVER_VERSION; options: $options"
        if [[ -n "$trim" ]]; then
            echo "# full dump: $count messages; DML inside stream blocks trimmed (see '# ...' lines)"
            trim_stream <"$tmp"
        else
            echo "# $count messages"
            cat "$tmp"
        fi
    } >"$file"
    echo "captured $name.hex ($count messages)"
}

V1="'proto_version', '1', 'publication_names', 'pub', 'messages', 'true'"
V2_STREAM="'proto_version', '2', 'publication_names', 'pub', 'messages', 'true', 'streaming', 'on'"

# --- types: Type ('Y') for the enum, Relation with many column types, Insert with values and NULLs.
capture types "$V1" "types: enum Type message, Relation with many column types, Insert with all values and with NULLs" <<'SQL'
INSERT INTO types_demo VALUES
    (1, -32768, 9223372036854775807, 'hello, world', 'abc', 12345.67, true, 1.5,
     '2024-01-02 03:04:05.123456+00', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"k": [1, 2, 3]}', '\xdeadbeef', 'happy', '{1,2,3}');
INSERT INTO types_demo (id) VALUES (2);
SQL

# --- crud: Insert, Update without old tuple, Update with old key ('K'), Delete by key ('K').
capture crud "$V1" "crud: Insert, Update (no old tuple), Update of the primary key (old 'K'), Delete ('K')" <<'SQL'
BEGIN;
INSERT INTO accounts VALUES (1, 'alice', 100.00), (2, 'bob', NULL);
COMMIT;
UPDATE accounts SET balance = 250.50 WHERE id = 1;
UPDATE accounts SET id = 10 WHERE id = 2;
DELETE FROM accounts WHERE id = 1;
SQL

# --- replica identities: FULL ('O' on update and delete), NOTHING, USING INDEX ('K' of the index column), keyless.
capture replica_identity "$V1" "replica identity: FULL (Update and Delete with old 'O'), NOTHING, USING INDEX (old 'K'), keyless table" <<'SQL'
INSERT INTO audit_full VALUES (1, 'first', 5);
UPDATE audit_full SET qty = 6 WHERE id = 1;
DELETE FROM audit_full WHERE id = 1;
INSERT INTO ident_nothing VALUES (1, 'x');
INSERT INTO ident_index VALUES (1, 'c-1', 'v1');
UPDATE ident_index SET code = 'c-2' WHERE id = 1;
DELETE FROM ident_index WHERE id = 1;
INSERT INTO keyless VALUES ('no key', 7), (NULL, NULL);
SQL

# --- truncate: plain, CASCADE, RESTART IDENTITY + CASCADE, over several tables.
capture truncate "$V1" "truncate: plain (options 0), CASCADE (1), RESTART IDENTITY CASCADE (3) over several tables" <<'SQL'
INSERT INTO trunc_parent VALUES (1);
INSERT INTO trunc_child VALUES (1, 1);
INSERT INTO trunc_serial (v) VALUES ('a');
TRUNCATE trunc_serial;
INSERT INTO trunc_parent VALUES (2);
INSERT INTO trunc_child VALUES (2, 2);
TRUNCATE trunc_parent CASCADE;
TRUNCATE trunc_parent, trunc_serial RESTART IDENTITY CASCADE;
SQL

# --- logical messages: transactional (inside a transaction), non-transactional, binary and empty content.
capture messages "$V1" "messages: pg_logical_emit_message transactional and non-transactional, binary and empty content" <<'SQL'
BEGIN;
INSERT INTO accounts VALUES (100, 'msg', 1);
SELECT pg_logical_emit_message(true, 'fixture.tx', 'transactional payload');
SELECT pg_logical_emit_message(false, 'fixture.nontx', 'non-transactional payload');
SELECT pg_logical_emit_message(true, 'fixture.bytes', '\x00ff10'::bytea);
COMMIT;
SELECT pg_logical_emit_message(false, 'fixture.empty', '');
SQL

# --- origin: a transaction written by a session with a replication origin.
capture origin "$V1" "origin: transaction from a session with replication origin 'fixture_origin' (origin LSN 0/ABCDEF)" <<'SQL'
SELECT pg_replication_origin_create('fixture_origin');
SELECT pg_replication_origin_session_setup('fixture_origin');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00');
INSERT INTO origin_demo VALUES (1, 'from elsewhere');
COMMIT;
SELECT pg_replication_origin_session_reset();
SQL

# --- toast: an out-of-line 9600-byte value, then an update of another column ('u' unchanged TOAST).
capture toast "$V1" "toast: Insert of a 9600-byte out-of-line text, Update of another column (body is 'u'), Delete" <<'SQL'
INSERT INTO docs SELECT 1, 'v1', string_agg(md5(i::text), '' ORDER BY i) FROM generate_series(1, 300) AS i;
UPDATE docs SET title = 'v2' WHERE id = 1;
DELETE FROM docs WHERE id = 1;
SQL

# --- binary: 'b' tuple values.
capture binary "$V1, 'binary', 'true'" "binary: binary 'true' option, Insert and Update with 'b' values and a NULL" <<'SQL'
INSERT INTO bin_demo VALUES (42, -2, 'bin text', true, 0.5, '\x0001ff', NULL);
UPDATE bin_demo SET label = 'changed' WHERE id = 42;
SQL

# --- streaming (protocol 2): a big transaction that commits.
capture stream_commit "$V2_STREAM" "stream_commit: protocol 2 streaming, logical_decoding_work_mem=64kB; 3000-row transaction with a transactional message: Stream Start/Stop blocks, Stream Commit" trim <<'SQL'
BEGIN;
INSERT INTO stream_demo SELECT i, 'row ' || i || ' ' || repeat('x', 40) FROM generate_series(1, 1500) AS i;
SELECT pg_logical_emit_message(true, 'fixture.stream', 'inside a stream');
INSERT INTO stream_demo SELECT i, 'row ' || i || ' ' || repeat('x', 40) FROM generate_series(1501, 3000) AS i;
COMMIT;
SQL

# --- streaming (protocol 2): a streamed subtransaction rolled back, then a streamed transaction rolled back.
capture stream_abort "$V2_STREAM" "stream_abort: protocol 2 streaming; (1) a savepoint whose 3000 rows were streamed is rolled back (Stream Abort xid/subxid), the transaction commits (Stream Commit); (2) a streamed 3000-row transaction rolls back (Stream Abort xid = subxid)" trim <<'SQL'
BEGIN;
INSERT INTO stream_demo VALUES (10001, 'kept before savepoint');
SAVEPOINT s1;
INSERT INTO stream_demo SELECT i, 'rolled back ' || i || ' ' || repeat('y', 40) FROM generate_series(20001, 23000) AS i;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO stream_demo VALUES (10002, 'kept after savepoint');
COMMIT;
BEGIN;
INSERT INTO stream_demo SELECT i, 'aborted ' || i || ' ' || repeat('z', 40) FROM generate_series(30001, 33000) AS i;
ROLLBACK;
SQL

echo "fixtures written to $OUT_DIR"
