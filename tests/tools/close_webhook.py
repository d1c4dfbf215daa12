#!/usr/bin/python3
"""Send signed Close webhooks to evbridge, as Close would (tests only).

Each delivery carries a new event (a unique id, so it is published, not
a duplicate) signed with the source's hex signature key:
close-sig-hash = hex HMAC-SHA256(hex-decoded key, timestamp + body).

  close_webhook.py --url http://127.0.0.1:P/webhooks/close-1 \\
      --secret HEX [--count 5] [--interval 1] [--timeout 5] [--parallel 1]

Prints one JSON line: every answer's status and reason, and the slowest
answer in seconds. Exit status 0 whatever the answers (the caller judges).
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def event(n, tag):
    now = time.gmtime()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", now) + ".000000"
    oid = "lead_%s%06d" % (tag, n)
    return {
        "event": {
            "id": "ev_%s%06d" % (tag, n),
            "date_created": stamp,
            "date_updated": stamp,
            "organization_id": "orga_probe",
            "user_id": "user_probe",
            "request_id": "req_probe",
            "api_key_id": None,
            "object_type": "lead",
            "object_id": oid,
            "lead_id": oid,
            "action": "created",
            "changed_fields": [],
            "data": {"id": oid, "display_name": "Probe %d" % n},
            "previous_data": {},
            "meta": {"request_method": "POST", "request_path": "/api/v1/lead/"},
        },
        "subscription_id": "whsub_probe",
    }


def send(url, key, body, timeout):
    u = urllib.parse.urlsplit(url)
    ts = str(int(time.time()))
    sig = hmac.new(key, ts.encode() + body, hashlib.sha256).hexdigest()
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        c.request("POST", u.path, body=body, headers={
            "Content-Type": "application/json",
            "close-sig-timestamp": ts,
            "close-sig-hash": sig,
        })
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            reason = json.loads(data).get("result") or \
                json.loads(data).get("reason")
        except ValueError:
            reason = None
        return r.status, reason, time.monotonic() - t0
    except OSError as e:
        return 0, "error: %s" % e, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--secret", required=True, help="hex signature key")
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--parallel", type=int, default=1,
                    help="deliveries sent at once in each round")
    ap.add_argument("--tag", default=None,
                    help="event id tag (default: random)")
    a = ap.parse_args()
    if not (0 < a.count <= 10000 and 0 < a.parallel <= 1000):
        ap.error("bounded: count 1..10000, parallel 1..1000")
    host = urllib.parse.urlsplit(a.url).hostname
    if host not in ("127.0.0.1", "localhost"):
        ap.error("loopback only")
    key = bytes.fromhex(a.secret)
    tag = a.tag or os.urandom(4).hex()
    results = []
    lock = threading.Lock()

    def one(n):
        body = json.dumps(event(n, tag)).encode()
        r = send(a.url, key, body, a.timeout)
        with lock:
            results.append(r)

    n = 0
    for i in range(a.count):
        threads = []
        for _ in range(a.parallel):
            t = threading.Thread(target=one, args=(n,))
            n += 1
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        if i + 1 < a.count:
            time.sleep(a.interval)
    out = {
        "sent": len(results),
        "statuses": {},
        "reasons": {},
        "max_s": round(max((r[2] for r in results), default=0), 3),
    }
    for st, reason, _ in results:
        out["statuses"][str(st)] = out["statuses"].get(str(st), 0) + 1
        out["reasons"][str(reason)] = out["reasons"].get(str(reason), 0) + 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
