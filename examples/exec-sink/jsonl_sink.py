#!/usr/bin/env python3
"""A Sluice sink in Python, speaking the exec protocol (version 1) on stdin/stdout.

It appends every transaction's records to a JSON-lines file. Exactly once, because its position
lives in the data itself: at start it cuts the file back to the last complete commit line and
reports that commit's offset per topic; at each flush it fsyncs before acknowledging.

    sinks:
      - name: py
        type: exec
        command: [python3, examples/exec-sink/jsonl_sink.py]
        config: {path: ./transactions.jsonl}
"""
import json
import os
import sys


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def recover(path):
    """Cuts `path` back to its last complete commit line; returns {topic: {offset, lsn}}."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    keep, positions = 0, {}
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        record = json.loads(data[start:end])
        if record.get("kind") == "commit":
            keep = end + 1
            positions[record["topic"]] = {"offset": record["offset"], "lsn": record["lsn"]}
        start = end + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
    # Positions after the cut: recompute from what was kept.
    positions = {}
    for line in data[:keep].splitlines():
        record = json.loads(line)
        if record.get("kind") == "commit":
            positions[record["topic"]] = {"offset": record["offset"], "lsn": record["lsn"]}
    return positions


def main():
    hello = json.loads(sys.stdin.readline())
    if hello.get("kind") != "hello" or hello.get("protocol") != 1:
        send({"kind": "error", "message": "expected hello with protocol 1", "retry": False})
        return
    path = (hello.get("config") or {}).get("path", "transactions.jsonl")
    send({"kind": "ready", "protocol": 1, "positions": recover(path)})
    pending = []
    with open(path, "ab") as out:
        for line in sys.stdin:
            message = json.loads(line)
            # A Debezium change event (format: debezium) has no kind: it is a change line.
            kind = message.get("kind", "change")
            if kind in ("begin", "change", "commit"):
                pending.append(line.encode())
            elif kind == "flush":
                out.write(b"".join(pending))
                out.flush()
                os.fsync(out.fileno())
                pending.clear()
                send({"kind": "ack", "id": message["id"]})
            elif kind == "shutdown":
                break


if __name__ == "__main__":
    main()
