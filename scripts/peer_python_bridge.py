#!/usr/bin/python3
"""A Kota- or Close-to-Kafka bridge as a platform team would write it in
Python.

The peer evbridge is compared with in `make bench` (docs/benchmarks.md,
"Peers"): confluent-kafka's Producer (idempotent, acks=all),
at-least-once, one process polling one or more accounts in turn.

  peer_python_bridge.py --bootstrap HOST:PORT --topic T --state FILE
                        --account NAME=BASE_URL=TOKEN [--account ...]
                        [--provider kota|close] [--page-size 100]
                        [--interval 1] [--exit-when-idle]

Kota (the default), for each account: GET BASE_URL/events?order_direction=asc&created_after=C
&page=P&page_size=N with the Bearer token; every item is produced as is
(the upstream's JSON, key = the event's id) to one topic; after each page
the producer is flushed and only then is the account's checkpoint
(created_after of the sweep, last page done) written to the state file
(write to a temporary file, fsync, rename). A sweep that reaches the last
page moves created_after to the newest created_at it saw. A crash
between a flush and the checkpoint produces that page again on restart:
at-least-once, duplicates possible, no loss.

Close (--provider close; TOKEN is the API key, sent as Basic auth): the
event log is newest first with a cursor, so each sweep asks
GET BASE_URL/api/v1/event/?date_updated__gt=D&_limit=N (no D on the
first), follows cursor_next to the end, then produces the sweep's events
oldest first (key = the event's id), flushes, and only then moves D to
the newest date_updated it saw (same state file). A crash before that
produces the whole sweep again: at-least-once.

--exit-when-idle: exit 0 once a full round over the accounts found
nothing new (used by the benchmark to time a backlog).
Prints one JSON line on exit: {"events": N, "pages": N, "vmhwm_kb": N}
(VmHWM: its peak resident set, from /proc/self/status).
"""
import argparse
import base64
import http.client
import json
import os
import sys
import time
import urllib.parse

from confluent_kafka import KafkaException, Producer


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Upstream:
    """One keep-alive HTTP connection per account (http.client)."""

    def __init__(self, base_url, token, basic=False):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path.rstrip("/")
        auth = ("Basic " + base64.b64encode((token + ":").encode()).decode()
                if basic else "Bearer " + token)
        self.headers = {"Authorization": auth, "Accept": "application/json"}
        self.conn = None

    def get(self, path, params):
        url = self.path + path + "?" + urllib.parse.urlencode(params)
        for attempt in range(5):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=10)
                self.conn.request("GET", url, headers=self.headers)
                r = self.conn.getresponse()
                body = r.read()
                if r.status == 200:
                    return json.loads(body)
                if r.status == 429 or r.status >= 500:
                    time.sleep(min(2 ** attempt * 0.2, 5))
                    continue
                raise RuntimeError("GET %s: %d %s" % (url, r.status, body[:200]))
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
                time.sleep(min(2 ** attempt * 0.2, 5))
        raise RuntimeError("GET %s: giving up" % url)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--account", action="append", required=True,
                    help="NAME=BASE_URL=TOKEN")
    ap.add_argument("--provider", choices=("kota", "close"), default="kota")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--start", default=None,
                    help="created_after of the first sweep (ISO 8601; "
                    "default 29 days ago)")
    ap.add_argument("--exit-when-idle", action="store_true")
    a = ap.parse_args()

    start = a.start or time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 29 * 86400))
    accounts = []
    for spec in a.account:
        name, base, token = spec.split("=", 2)
        accounts.append((name, Upstream(base, token,
                                        basic=a.provider == "close")))

    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "none",
    })
    def produce(it):
        while True:
            try:
                producer.produce(a.topic, key=it["id"].encode(),
                                 value=json.dumps(it, separators=(",", ":")),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)

    def flush():
        if producer.flush(30) != 0 or errors:
            raise KafkaException(errors[0] if errors else "flush timed out")

    def sweep_close(name, up):
        """One sweep of a Close account; returns the events produced."""
        nonlocal pages
        st = state.setdefault(name, {"date_updated_gt": None})
        params = {"_limit": a.page_size}
        if st["date_updated_gt"]:
            params["date_updated__gt"] = st["date_updated_gt"]
        items = []
        while True:
            body = up.get("/api/v1/event/", params)
            items.extend(body.get("data", []))
            pages += 1
            if not body.get("cursor_next"):
                break
            # the cursor carries the date window: only _limit besides it
            params = {"_limit": a.page_size, "_cursor": body["cursor_next"]}
        if not items:
            return 0
        newest = st["date_updated_gt"]
        for it in reversed(items):  # oldest first
            produce(it)
            d = it.get("date_updated")
            if d and (newest is None or d > newest):
                newest = d
        # at-least-once: the sweep is acknowledged before its checkpoint
        flush()
        st["date_updated_gt"] = newest
        save_state(a.state, state)
        return len(items)

    state = load_state(a.state)
    events = pages = 0
    while True:
        new = 0
        for name, up in accounts:
            if a.provider == "close":
                n = sweep_close(name, up)
                events += n
                new += n
                continue
            st = state.setdefault(name, {"created_after": start, "page": 0,
                                         "newest": None})
            while True:
                page = st["page"] + 1
                body = up.get("/events", {
                    "order_direction": "asc",
                    "created_after": st["created_after"],
                    "page": page, "page_size": a.page_size})
                items = body.get("items", [])
                for it in items:
                    produce(it)
                    c = it.get("created_at") or it.get("created")
                    if c and (st["newest"] is None or c > st["newest"]):
                        st["newest"] = c
                # at-least-once: the page is acknowledged before its
                # checkpoint is written
                flush()
                events += len(items)
                new += len(items)
                pages += 1
                if body.get("has_next_page"):
                    st["page"] = page
                else:
                    if st["newest"]:
                        st["created_after"] = st["newest"]
                    st["page"] = 0
                save_state(a.state, state)
                if not body.get("has_next_page"):
                    break
        if new == 0 and a.exit_when_idle:
            break
        time.sleep(a.interval)
    producer.flush(30)
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(json.dumps({"events": events, "pages": pages, "vmhwm_kb": hwm}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
