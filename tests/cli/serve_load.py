#!/usr/bin/env python3
"""Measures `nanocascade serve` on the default model beside idle and trickling clients (issue #19).

Not a test (it is not run by `make test`): the numbers in docs/server.md come from it.

    python3 tests/cli/serve_load.py [--idle 1000] [--trickling 50] [--seconds 5]
    NANOCASCADE_BIN=path/to/nanocascade python3 tests/cli/serve_load.py

Starts `serve` on a free port, measures GET /health and a 4-token chat completion alone, then
opens the idle connections (silent since their accept) and the trickling ones (a request header
sent one byte a second), measures the same requests beside them for --seconds (at least two of
each), counts the idle
connections the server still holds open, and sends a request on each of them (answered = still
served). Prints one JSON object: latencies (ms, p50 and max), threads and RSS of the server
before and beside the load, and after --requests more requests. Flags after "--" go to serve;
a CPU chat completion can take longer than the header deadline on a busy machine, so pass
e.g. `-- --header-timeout 120` to count the idle connections that the server holds, not the
ones its deadline closed.
"""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NANOCASCADE_BIN", os.path.join(ROOT, "build", "nanocascade"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Threads", "VmRSS"):
                out[k] = v.strip()
    return {"threads": int(out["Threads"]), "rss_mb": round(int(out["VmRSS"].split()[0]) / 1024, 1)}


def round_trip(port, raw, timeout=30.0):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return (time.monotonic() - t0) * 1e3, got


HEALTH = b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def chat(model):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 4, "temperature": 0, "ignore_eos": True}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def probe(port, model, n):
    health, chats = [], []
    for _ in range(n):
        ms, r = round_trip(port, HEALTH)
        assert r.startswith(b"HTTP/1.1 200"), r[:200]
        health.append(ms)
        ms, r = round_trip(port, chat(model))
        assert r.startswith(b"HTTP/1.1 200"), r[:200]
        chats.append(ms)
    return health, chats


def summary(xs):
    return {"p50": round(statistics.median(xs), 1), "max": round(max(xs), 1), "n": len(xs)}


def still_open(s):
    try:
        return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--trickling", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("serve_args", nargs="*", help="more flags for serve")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (a.idle + a.trickling) + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(need, hard)), hard))
    port = free_port()
    srv = subprocess.Popen([BIN, "serve", "--port", str(port), *a.serve_args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                _, r = round_trip(port, HEALTH, 1)
                if r.startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                time.sleep(0.1)
        _, r = round_trip(port, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        model = json.loads(r.split(b"\r\n\r\n", 1)[1])["data"][0]["id"]
        out = {"binary": BIN, "started": proc_status(srv.pid)}
        h, c = probe(port, model, 10)
        out["alone"] = {"health_ms": summary(h), "chat_ms": summary(c)}
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.idle)]
        trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.trickling)]
        for s in trickling:
            s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        h, c = [], []
        start = tick = time.monotonic() - 1
        while time.monotonic() - start < a.seconds or len(c) < 2:
            if time.monotonic() - tick >= 1:  # one byte a second on each trickling connection
                tick = time.monotonic()
                for s in trickling:
                    try:
                        s.sendall(b"x")
                    except OSError:
                        pass  # closed by the server (beyond the cap, or its header deadline)
            hh, cc = probe(port, model, 1)
            h += hh
            c += cc
        out["beside_load"] = {"health_ms": summary(h), "chat_ms": summary(c),
                              **proc_status(srv.pid)}
        out["idle_still_open"] = sum(still_open(s) for s in idle)
        out["trickling_still_open"] = sum(still_open(s) for s in trickling)
        answered = 0
        for s in idle:
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
        for s in idle:
            try:
                s.settimeout(10)
                answered += s.recv(12).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
            s.close()
        out["idle_answered_later"] = answered
        for s in trickling:
            s.close()
        for _ in range(a.requests):
            round_trip(port, HEALTH)
        out[f"after_{a.requests}_more_requests"] = proc_status(srv.pid)
        print(json.dumps(out, indent=1))
    finally:
        srv.terminate()
        srv.wait(30)


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"no binary at {BIN}: build first")
    main()
