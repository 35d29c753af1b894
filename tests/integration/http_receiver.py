#!/usr/bin/python3
"""An HTTP receiver for the http output's tests (and bench/), stdlib only.

  http_receiver.py DIR [--port N] [--cert C --key K]

Writes DIR/port when it listens. Behaviour comes from DIR/mode (re-read on
every request and every 50 ms), one of:
  ok            200 and the batch is recorded
  500 | 400     that status, nothing recorded
  429:N | 503:N that status with Retry-After: N
  hang          reads the request, never answers (until the mode changes)
  reset         reads the request, closes the connection with a TCP reset
  down          the port is closed (connection refused)
  flap:S        up S seconds, down S seconds, and so on
  count         200, counts readings without recording them (bench)
Every accepted batch is appended to DIR/records.jsonl as
  {"key":..., "agent":..., "gen":..., "seqs":[...], "n":..., "t":...}
and every request to DIR/requests.log as "TIME STATUS KEY".
"""
import gzip
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

DIR = sys.argv[1]
args = sys.argv[2:]
opt = {args[i]: args[i + 1] for i in range(0, len(args) - 1, 2)}
PORT = int(opt.get("--port", "0"))
CERT, KEY = opt.get("--cert"), opt.get("--key")
lock = threading.Lock()
counted = [0, 0]  # readings, batches (mode count)
flap_start = time.monotonic()


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            m = f.read().strip() or "ok"
    except FileNotFoundError:
        m = "ok"
    if m.startswith("flap:"):
        s = float(m[5:])
        up = int((time.monotonic() - flap_start) / s) % 2 == 0
        return "ok" if up else "down"
    return m


def log_request(status, key):
    with lock, open(os.path.join(DIR, "requests.log"), "a") as f:
        f.write(f"{time.time():.3f} {status} {key}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, extra=None):
        body = b'{"ok":true}' if status == 200 else b'{"error":"test"}'
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        key = self.headers.get("Idempotency-Key", "")
        m = mode()
        if m == "hang":
            while mode() == "hang":
                time.sleep(0.05)
            self.close_connection = True
            return
        if m == "reset" or m == "down":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            log_request("reset", key)
            return
        if m in ("500", "400") or m.startswith("429:") or m.startswith("503:"):
            code = int(m.split(":")[0])
            extra = {"Retry-After": m.split(":")[1]} if ":" in m else None
            log_request(code, key)
            self.answer(code, extra)
            return
        if self.headers.get("Content-Encoding") == "gzip" and m != "count":
            body = gzip.decompress(body)
        if m == "count":
            # the count header (the output and the raw bench both send it):
            # the receiver must not be the bottleneck of what is measured
            if self.headers.get("X-Mittari-Count"):
                c = int(self.headers["X-Mittari-Count"])
            elif self.headers.get("Content-Type") == "application/x-ndjson":
                c = body.count(b"\n")
            else:
                c = int(json.loads(body)["count"])
            with lock:
                counted[0] += c
                counted[1] += 1
                with open(os.path.join(DIR, "count.tmp"), "w") as f:
                    f.write(f"{counted[0]} {counted[1]}\n")
                os.replace(os.path.join(DIR, "count.tmp"), os.path.join(DIR, "count"))
            self.answer(200)
            return
        if self.headers.get("Content-Type") == "application/x-ndjson":
            recs = [json.loads(l) for l in body.splitlines() if l.strip()]
            doc = {"agent_id": self.headers.get("X-Mittari-Agent"),
                   "generation": int(self.headers.get("X-Mittari-Generation", "0")),
                   "key": key, "readings": recs}
        else:
            doc = json.loads(body)
            if doc.get("key") != key:
                log_request("400-key-mismatch", key)
                self.answer(400)
                return
        rec = {"key": key, "agent": doc["agent_id"], "gen": doc["generation"],
               "seqs": [r["seq"] for r in doc["readings"]], "n": len(doc["readings"]),
               "t": time.time(), "readings": doc["readings"] if os.path.exists(
                   os.path.join(DIR, "keep_readings")) else None}
        with lock, open(os.path.join(DIR, "records.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        log_request(200, key)
        self.answer(200)


def serve_conn(conn):
    try:
        if CERT:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(CERT, KEY)
            conn = ctx.wrap_socket(conn, server_side=True)
        Handler(conn, conn.getpeername(), None)
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    s.settimeout(0.05)
    return s


sock = listen(PORT)
PORT = sock.getsockname()[1]
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(f"{PORT}\n")
os.replace(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
while True:
    if mode() == "down":
        if sock:
            sock.close()
            sock = None
        time.sleep(0.05)
        continue
    if not sock:
        try:
            sock = listen(PORT)
        except OSError:
            time.sleep(0.05)
            continue
    try:
        c, _ = sock.accept()
    except socket.timeout:
        continue
    c.settimeout(None)
    # the answer goes out in several writes: without this, Nagle's algorithm
    # and the client's delayed ACK hold each answer ~40 ms
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve_conn, args=(c,), daemon=True).start()
