#!/usr/bin/python3
"""A hostile events API on loopback, for evbridge tests.

Answers every GET with one kind of abuse, chosen by the first path
segment, so several evbridge sources (base_url http://127.0.0.1:P/<mode>)
each meet one of them:

  endless   200, chunked, a page that never ends (until the client goes)
  huge      200, a valid page of --huge-mb MiB with a Content-Length
  deep      200, JSON nested --depth levels deep
  utf8      200, a page whose strings hold invalid UTF-8
  bigid     200, a page with a 300 KB event id
  slow      200, one byte per second (the client times out)
  flood     200, Content-Length says 1 GiB, bytes as fast as possible

The page shape is Close's ({"data": [...], "cursor_next": ...}).
GET /_stats gives the requests served per mode as JSON. On start, prints
{"port": N} on stdout. Only binds 127.0.0.1; every answer ends within
--max-seconds.
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {}
LOCK = threading.Lock()
ARGS = None


def close_event(n, eid=None, extra=None):
    ev = {
        "id": eid or ("ev_hostile%08d" % n),
        "date_created": "2023-11-14T22:09:58.395000",
        "date_updated": "2023-11-14T22:09:58.395000",
        "organization_id": "orga_hostile",
        "user_id": "user_hostile",
        "object_type": "lead",
        "object_id": "lead_hostile%d" % n,
        "lead_id": "lead_hostile%d" % n,
        "action": "created",
        "changed_fields": [],
        "data": {"id": "lead_hostile%d" % n, "pad": "p" * 200},
        "previous_data": {},
        "meta": {"request_method": "POST", "request_path": "/api/v1/lead/"},
    }
    if extra:
        ev.update(extra)
    return ev


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def head(self, length=None, chunked=False):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def whole(self, body):
        self.head(len(body))
        self.wfile.write(body)

    def do_GET(self):
        mode = self.path.strip("/").split("/", 1)[0].split("?", 1)[0]
        if mode == "_stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            return self.whole(body)
        with LOCK:
            STATS[mode] = STATS.get(mode, 0) + 1
        deadline = time.monotonic() + ARGS.max_seconds
        try:
            if mode == "endless":
                self.head(chunked=True)
                self.chunk(b'{"data":[')
                n = 0
                piece = b"".join(json.dumps(close_event(i)).encode() + b","
                                 for i in range(50))
                while time.monotonic() < deadline:
                    self.chunk(piece)
                    n += 1
            elif mode == "huge":
                one = json.dumps(close_event(0)).encode() + b","
                count = ARGS.huge_mb * 1024 * 1024 // len(one)
                tail = b'{"id":"ev_end"}],"cursor_next":null}'
                self.head(len(b'{"data":[') + count * len(one) + len(tail))
                self.wfile.write(b'{"data":[')
                block = one * 200
                left = count
                while left > 0 and time.monotonic() < deadline:
                    k = min(left, 200)
                    self.wfile.write(block if k == 200 else one * k)
                    left -= k
                self.wfile.write(tail)
            elif mode == "deep":
                d = ARGS.depth
                self.whole(b'{"data":[' + b"[" * d + b"]" * d +
                           b'],"cursor_next":null}')
            elif mode == "utf8":
                ev = json.dumps(close_event(1)).encode()
                ev = ev.replace(b"lead_hostile1", b"lead_\xff\xfe\xc3")
                self.whole(b'{"data":[' + ev + b'],"cursor_next":null}')
            elif mode == "bigid":
                ev = close_event(2, eid="ev_" + "x" * 300000)
                self.whole(json.dumps({"data": [ev],
                                       "cursor_next": None}).encode())
            elif mode == "slow":
                self.head(1000)
                for _ in range(1000):
                    if time.monotonic() >= deadline:
                        break
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            elif mode == "flood":
                self.head(1 << 30)
                junk = b"[" * 65536
                while time.monotonic() < deadline:
                    self.wfile.write(junk)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up: that is the point


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--huge-mb", type=int, default=40)
    ap.add_argument("--depth", type=int, default=100000)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ARGS = ap.parse_args()
    if ARGS.huge_mb > 512 or ARGS.depth > 10000000 or ARGS.max_seconds > 120:
        ap.error("bounded: --huge-mb <= 512, --depth <= 1e7, <= 120 s")
    srv = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write(json.dumps({"port": srv.server_address[1]}) + "\n")
    sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
