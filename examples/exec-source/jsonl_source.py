#!/usr/bin/env python3
"""A Sluice source in Python, speaking the exec protocol (version 1) on stdin/stdout.

It follows a JSON-lines file (like `tail -f`): each complete line is one row, inserted into one
table, as one transaction whose position is the line's number. Exactly once without any state of
its own: Sluice stores each transaction's position with it and says the last one in `hello`, so
the plugin starts at the line after it (and Sluice drops anything sent again).

    sources:
      - name: feed
        type: exec
        command: [python3, examples/exec-source/jsonl_source.py]
        config:
          path: ./incoming.jsonl
          table: public.events
          columns: [{name: id, type: bigint, key: true}, {name: body, type: text}]
"""
import json
import os
import select
import sys


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read_line(fd):
    """One line from `fd`, byte by byte: nothing is left in a buffer that select cannot see."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line


def main():
    hello = json.loads(read_line(0))
    config = hello.get("config") or {}
    path, table, columns = config["path"], config["table"], config["columns"]
    position = hello.get("position") or 0  # the last line Sluice holds
    send({"kind": "ready", "protocol": 1})
    send({"kind": "relation", "table": table, "columns": columns})

    line_number, pending, inbox = 0, b"", b""
    handle = None
    while True:
        # Sluice's messages (`ack`, `shutdown`; unbuffered, so select sees them all), and a poll of
        # the file every 50 ms.
        readable, _, _ = select.select([0], [], [], 0.05)
        if readable:
            data = os.read(0, 65536)
            if not data:
                return
            inbox += data
            *messages, inbox = inbox.split(b"\n")
            if any(json.loads(m)["kind"] == "shutdown" for m in messages if m.strip()):
                return
        if handle is None:
            if not os.path.exists(path):
                continue
            handle = open(path, "rb")
        chunk = handle.read(1 << 20)
        if not chunk:
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line_number += 1
            if line_number <= position or not line.strip():
                continue
            send({"kind": "begin", "position": line_number})
            send({"kind": "change", "op": "insert", "table": table, "after": json.loads(line)})
            send({"kind": "commit"})


if __name__ == "__main__":
    main()
