#!/usr/bin/python3
"""Hostile HTTP clients against a listener on loopback (tests only).

Each mode opens a bounded number of connections for a bounded time and
prints one JSON summary line on stdout: how many connections the server
closed, and after how long.

  slowloris  headers dribbled one byte every --interval per connection
  slowbody   full headers with a Content-Length larger than what is sent,
             then part of the body, then nothing
  idle       connect and send nothing
  bigheaders one header block larger than the server's limit; the answer
             (status) is recorded
  pipeline   many requests written back to back on each connection
             without reading a single response

  hostile_client.py MODE --port P [--conns N] [--duration S] [--path /x]

Only 127.0.0.1 is ever contacted.
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time


def connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setblocking(False)
    return s


class Conn:
    def __init__(self, sock, payload):
        self.sock = sock
        self.payload = payload
        self.off = 0
        self.opened = time.monotonic()
        self.closed_after = None
        self.received = b""


def closed_by_peer(sock):
    """True when the server closed (EOF or reset); reads and drops data."""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                return True, b""
            return False, d
    except BlockingIOError:
        return False, b""
    except OSError:
        return True, b""


def summary(mode, conns, started, extra=None):
    now = time.monotonic()
    closed = [c.closed_after for c in conns if c.closed_after is not None]
    out = {
        "mode": mode,
        "conns": len(conns),
        "closed": len(closed),
        "open": len(conns) - len(closed),
        "min_closed_s": round(min(closed), 2) if closed else None,
        "max_closed_s": round(max(closed), 2) if closed else None,
        "ran_s": round(now - started, 2),
    }
    if extra:
        out.update(extra)
    return out


def run_dribble(a, mode):
    """slowloris / slowbody / idle: hold connections, send a little."""
    body_len = 100000
    if mode == "slowloris":
        payload = (b"POST " + a.path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                   + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 40)
                              for i in range(200)))
    elif mode == "slowbody":
        payload = (b"POST " + a.path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n{\"event\":" % body_len)
    else:
        payload = b""
    conns = []
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(a.conns):
        try:
            s = connect(a.port)
        except OSError as e:
            print("connect failed: %s" % e, file=sys.stderr)
            break
        c = Conn(s, payload)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        if mode == "slowbody":
            # Headers and the start of the body at once, then silence.
            try:
                c.sock.send(payload)
            except OSError:
                pass
            c.off = len(payload)
    end = started + a.duration
    next_tick = time.monotonic()
    while time.monotonic() < end:
        open_conns = [c for c in conns if c.closed_after is None]
        if not open_conns:
            break
        timeout = max(0.0, min(next_tick, end) - time.monotonic())
        for key, _ in sel.select(timeout):
            c = key.data
            gone, _ = closed_by_peer(c.sock)
            if gone:
                c.closed_after = time.monotonic() - c.opened
                sel.unregister(c.sock)
                c.sock.close()
        if time.monotonic() >= next_tick:
            next_tick += a.interval
            if mode == "slowloris":
                for c in open_conns:
                    if c.closed_after is not None or c.off >= len(c.payload):
                        continue
                    try:
                        c.sock.send(c.payload[c.off:c.off + 1])
                        c.off += 1
                    except OSError:
                        c.closed_after = time.monotonic() - c.opened
                        sel.unregister(c.sock)
                        c.sock.close()
    res = summary(mode, conns, started,
                  {"max_bytes_sent": max((c.off for c in conns), default=0)})
    for c in conns:
        if c.closed_after is None:
            c.sock.close()
    return res


def run_bigheaders(a):
    conns = []
    statuses = {}
    started = time.monotonic()
    for _ in range(a.conns):
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        except OSError as e:
            print("connect failed: %s" % e, file=sys.stderr)
            break
        c = Conn(s, b"")
        conns.append(c)
        req = (b"POST " + a.path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
               + b"X-Big: " + b"b" * a.header_bytes + b"\r\n\r\n")
        try:
            s.sendall(req)
        except OSError:
            pass  # the server may close while we still write
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        c.closed_after = time.monotonic() - c.opened
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        st = line.split(" ")[1] if line.startswith("HTTP/") else "none"
        statuses[st] = statuses.get(st, 0) + 1
        s.close()
    return summary("bigheaders", conns, started, {"statuses": statuses})


def run_pipeline(a):
    one = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    chunk = one * 2000
    conns = []
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(a.conns):
        s = connect(a.port)
        # A small receive buffer: the server's answers pile up sooner.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c = Conn(s, chunk)
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
    if a.ports_file:
        # Our local ports, so the caller can watch the server's side.
        with open(a.ports_file + ".tmp", "w") as f:
            for c in conns:
                f.write("%d\n" % c.sock.getsockname()[1])
        os.rename(a.ports_file + ".tmp", a.ports_file)
    sent = 0
    end = started + a.duration
    while time.monotonic() < end:
        if all(c.closed_after is not None for c in conns):
            break
        for key, _ in sel.select(0.2):
            c = key.data
            try:
                n = c.sock.send(chunk)
                sent += n
            except BlockingIOError:
                pass
            except OSError:
                c.closed_after = time.monotonic() - c.opened
                sel.unregister(c.sock)
                c.sock.close()
    res = summary("pipeline", conns, started,
                  {"requests_sent": sent // len(one), "bytes_sent": sent})
    for c in conns:
        if c.closed_after is None:
            c.sock.close()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["slowloris", "slowbody", "idle",
                                     "bigheaders", "pipeline"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--path", default="/webhooks/x")
    ap.add_argument("--header-bytes", type=int, default=64 * 1024)
    ap.add_argument("--ports-file", default=None,
                    help="pipeline: write our local ports here")
    a = ap.parse_args()
    if a.conns < 1 or a.conns > 5000 or a.duration > 120:
        ap.error("bounded: 1..5000 connections, at most 120 s")
    if a.mode in ("slowloris", "slowbody", "idle"):
        res = run_dribble(a, a.mode)
    elif a.mode == "bigheaders":
        res = run_bigheaders(a)
    else:
        res = run_pipeline(a)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
