#!/usr/bin/env python3
"""An HTTP receiver for HTTPSinkTests.

    http_receiver.py PORT LOG SEED FAIL_RATE CONTROL [CERT KEY [CLIENT_CA]]

Records every request as one JSON line in LOG: {"n", "method", "path", "status", "headers" (names
lower-cased), "body"}. Answers 503 to a seeded-random FAIL_RATE share of requests, 200 otherwise.
While the file CONTROL exists and holds "reject", answers 400 with a JSON body naming REJECT-MARKER;
while it holds "408" or "429", answers that status; while it holds "slow", takes the request (recorded
with "slow": true) but answers only after 2.5 s; while it holds "endless", answers 200 with a body
that does not end (256 MiB at most, recorded with "endless": true). With CERT and KEY it speaks HTTPS; with CLIENT_CA it
also requires a client certificate signed by that CA (its CN is recorded as "client").
"""
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log_path, seed, fail_rate, control = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rng = random.Random(seed)
lock = threading.Lock()
count = [0]
log = open(log_path, "a")

REJECT_BODY = b'{"error":"REJECT-MARKER-5521: field amount must be positive"}'


def mode():
    try:
        with open(control) as f:
            return f.read().strip()
    except OSError:
        return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self):
        body = self.read_body()
        with lock:
            count[0] += 1
            current = mode()
            if current == "reject":
                status, answer = 400, REJECT_BODY
            elif current in ("408", "429"):
                status, answer = int(current), b"slow down"
            elif current in ("slow", "endless"):
                status, answer = 200, b'{"ok":true}'
            elif rng.random() < fail_rate:
                status, answer = 503, b"temporarily unavailable"
            else:
                status, answer = 200, b'{"ok":true}'
            record = {"n": count[0], "method": "POST", "path": self.path, "status": status,
                      "headers": {k.lower(): v for k, v in self.headers.items()},
                      "body": body.decode("utf-8", "replace"), "slow": current == "slow", "endless": current == "endless",
                      "client": client_name(self.connection)}
            log.write(json.dumps(record) + "\n")
            log.flush()
        if current == "endless":
            # No length: the body lasts until the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.close_connection = True
            chunk = b" " * 65536
            try:
                for _ in range(4096):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        if current == "slow":
            time.sleep(2.5)  # past the client's timeout
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status != 503 else "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def client_name(connection):
    peer = connection.getpeercert() if hasattr(connection, "getpeercert") else None
    for entry in (peer or {}).get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return value
    return None


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
if len(sys.argv) > 7:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[6], sys.argv[7])
    if len(sys.argv) > 8:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(sys.argv[8])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening on", port, flush=True)
server.serve_forever()
