#!/usr/bin/env python3
"""A misbehaving exec-protocol plugin for ExecSinkTests.

Its hello config chooses what it does on `flush`:

    mode: malformed   writes a line that is not the protocol (and never acks)
    mode: hang        never acks (keeps reading its input)
    mode: fatal       answers {"kind":"error","retry":false,...}
    mode: stall       after `ready`, stops reading its input altogether

While the file named by `flag` exists, it behaves instead: appends the batch's lines to `path`,
fsyncs, and acks, resuming from the last commit line of `path` like examples/exec-sink/jsonl_sink.py,
in either format (with format: debezium a change line is a Debezium event, which has no kind).
Each start appends "<pid> <parent pid> <mode> <unix time>" to `starts` and the hello message to `hello` (when given).
"""
import json
import os
import sys
import time

MALFORMED_LINE = "this is not the exec protocol: MALFORMED-MARKER-7731"
FATAL_MESSAGE = "FATAL-MARKER-4410: the target rejected column amount"


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def recover(path):
    """Cuts `path` back to its last complete commit line; returns {topic: {offset, lsn}}."""
    if not path or not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    keep, positions, start = 0, {}, 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        try:
            record = json.loads(data[start:end])
        except ValueError:
            break
        if record.get("kind") == "commit":
            keep = end + 1
            positions[record["topic"]] = {"offset": record["offset"], "lsn": record["lsn"]}
        start = end + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
    return positions


def main():
    hello = json.loads(sys.stdin.readline())
    config = hello.get("config") or {}
    mode = config.get("mode", "")
    flag = config.get("flag")
    path = config.get("path")
    starts = config.get("starts")
    if config.get("hello"):
        with open(config["hello"], "a") as f:
            f.write(json.dumps(hello) + "\n")
    if starts:
        with open(starts, "a") as f:
            f.write("%d %d %s %.3f\n" % (os.getpid(), os.getppid(), mode, time.time()))
    behave = bool(flag) and os.path.exists(flag)
    send({"kind": "log", "message": "fixture plugin started in mode %s (behaving: %s)" % (mode, behave)})
    send({"kind": "ready", "protocol": 1, "positions": recover(path) if behave else {}})
    if mode == "stall" and not behave:
        parent = os.getppid()
        while os.getppid() == parent:  # never reads its input again; ends once orphaned
            time.sleep(0.2)
        return
    pending = []
    out = open(path, "ab") if (behave and path) else None
    for line in sys.stdin:
        message = json.loads(line)
        kind = message.get("kind", "change")
        if kind in ("begin", "change", "commit"):
            pending.append(line.encode())
        elif kind == "flush":
            if not behave:
                if mode == "malformed":
                    sys.stdout.write(MALFORMED_LINE + "\n")
                    sys.stdout.flush()
                elif mode == "fatal":
                    send({"kind": "error", "retry": False, "message": FATAL_MESSAGE})
                # hang: say nothing
                continue
            if out is not None:
                out.write(b"".join(pending))
                out.flush()
                os.fsync(out.fileno())
            pending.clear()
            send({"kind": "ack", "id": message["id"]})
        elif kind == "shutdown":
            break


if __name__ == "__main__":
    main()
