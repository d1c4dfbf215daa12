#!/usr/bin/python3
"""Compare what evbridge published to Kafka with the simulator's ground truth.

Reads every topic under the prefix with confluent_kafka (read_committed),
derives each truth event's expected CloudEvents type, topic and key on its
own (from docs/providers.md and docs/event-format.md, not from evbridge's
code), and reports:

  missing     current (not superseded) versions absent from Kafka
  unserved    messages for versions the simulator never served
  unknown     messages that match no truth version at all
  duplicates  (source, id, version) published more than once
  misrouted   messages on the wrong topic or with the wrong key
  disorder    per key, a message whose event time is older than the one
              before it in the same partition

Prints a JSON summary; exit status 0 when everything above is zero.
"""
import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition


def sanitize_part(s):
    out = []
    for ch in s.lower():
        m = ch if re.match(r"[a-z0-9.\-]", ch) else "-"
        if m in ".-":
            if not out or out[-1] == m:
                continue
        out.append(m)
    while out and out[-1] in ".-":
        out.pop()
    return "".join(out)


def topic_for(prefix, provider, entity, action):
    name = "%s.%s.%s.%s" % (sanitize_part(prefix), sanitize_part(provider),
                            sanitize_part(entity), sanitize_part(action))
    return sanitize_part(name) or "unnamed"


def expect(ev):
    """Expected (entity, action, version) of a truth line, derived here."""
    n = ev["native"]
    prov = ev["provider"]
    if prov == "kommo":
        entity = n["entity_type"]
        t = n["type"]
        action = t[len(entity) + 1:] if t.startswith(entity + "_") else t
        eid = str(n.get("entity_id", ""))
        version = ""
        tms = int(n["created_at"]) * 1000
    elif prov == "close":
        entity = n["object_type"]
        action = n["action"]
        eid = n.get("object_id") or ""
        version = n["date_updated"]
        tms = None
    elif prov == "kota":
        t = n["type"]
        if "." in t:
            entity, action = t.rsplit(".", 1)
        else:
            entity, action = t, "event"
        eid = (n.get("data") or {}).get("id") or ""
        version = ""
        tms = None
    else:
        raise ValueError(prov)
    return entity, action, eid, version, tms


EXTRA_CONF = {}


def consume(bootstrap, prefix, timeout, exact=False):
    c = Consumer(dict({
        "bootstrap.servers": bootstrap,
        "group.id": "truth-check-%d" % time.time_ns(),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }, **EXTRA_CONF))
    md = c.list_topics(timeout=10)
    parts = []
    for t, tm in md.topics.items():
        if (t == prefix) if exact else t.startswith(prefix + "."):
            for p in tm.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(t, p),
                                                 timeout=10)
                if hi > lo:
                    parts.append(TopicPartition(t, p, lo))
    recs = []
    if not parts:
        c.close()
        return recs
    c.assign(parts)
    pending = {(p.topic, p.partition) for p in parts}
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                pending.discard((m.topic(), m.partition()))
            continue
        recs.append(m)
    c.close()
    return recs


def uvarint(b, i):
    v = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def committed_stamps(bootstrap, state_prefix, timeout):
    """(session hex, seq) of transactions the state topic shows committed.

    Each seen record (docs/delivery.md "The seen record") carries the stamp
    (session, seq, prev) of its transaction: prev is the session's last
    committed seq, so every prev is committed. A session's last stamp is
    never confirmed by a later one; it is counted as committed, as
    evbridge's restore trusts it (distrust_tail 0). Used on brokers that
    ignore read_committed (the mock): events of transactions proven
    aborted are then visible and must not count."""
    recs = consume(bootstrap, state_prefix + ".seen", timeout, exact=True)
    stamps = defaultdict(list)
    for m in recs:
        b = m.value() or b""
        if len(b) < 12 or b[0] != 0xEB or b[1] != 0x5E:
            continue
        session = "%016x" % int.from_bytes(b[4:12], "big")
        seq, i = uvarint(b, 12)
        prev, i = uvarint(b, i)
        stamps[session].append((seq, prev))
    ok = set()
    for session, lst in stamps.items():
        for seq, prev in lst:
            if prev:
                ok.add((session, prev))
        ok.add((session, max(seq for seq, _ in lst)))
    return ok


def txn_stamp(m):
    for k, v in m.headers() or []:
        if k == "evbridge-txn" and v:
            session, _, seq = v.decode().partition(":")
            return session, int(seq)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--truth", required=True, help="JSON lines file")
    ap.add_argument("--prefix", default="crm")
    ap.add_argument("--provider", default=None,
                    help="read only this provider's topics")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--kafka-prop", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="consumer property (SASL, TLS), repeatable")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--allow-deadletter", action="append", default=[],
                    metavar="SOURCE",
                    help="dead-letter records of this source (not a "
                         "simulator account) are expected")
    ap.add_argument("--allow-disorder", action="store_true",
                    help="report per-key disorder without failing (webhooks "
                    "arrive in any order; the platforms promise none)")
    ap.add_argument("--committed-only", metavar="STATE_PREFIX", default=None,
                    help="skip messages whose evbridge-txn header names a "
                    "transaction that <STATE_PREFIX>.seen proves aborted "
                    "(brokers that ignore read_committed)")
    ap.add_argument("--topic-counts", default=None,
                    help="write '<topic> <messages>' lines to this file")
    a = ap.parse_args()
    # On a shared cluster (EB_TEST_BROKERS) each test's topics carry its
    # namespace, as tests/tools/sim_config.py wrote them into the config.
    if os.environ.get("EB_TEST_NS"):
        a.prefix = "%s-%s" % (a.prefix, os.environ["EB_TEST_NS"])
    for kv in a.kafka_prop:
        k, v = kv.split("=", 1)
        EXTRA_CONF[k] = v

    truth = {}
    poison = {}  # (source, native id) of poison versions: dead-letter only
    poison_old = set()  # superseded poison versions: allowed, not required
    with open(a.truth) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            ev = json.loads(line)
            if ev.get("poison"):
                # A poison version that Close consolidated away before any
                # poll saw it is not required (like any superseded one).
                if not ev.get("superseded"):
                    poison[(ev["account"], ev["id"])] = 0
                else:
                    poison_old.add((ev["account"], ev["id"]))
                continue
            entity, action, eid, version, tms = expect(ev)
            src = ev["account"]  # sources are named after sim accounts
            key = (src, ev["id"], version)
            truth[key] = {
                "topic": topic_for(a.prefix, ev["provider"], entity, action),
                "key": "%s/%s/%s" % (src, entity, eid),
                "served": bool(ev.get("served")),
                "superseded": bool(ev.get("superseded")),
            }

    topic_prefix = a.prefix
    if a.provider:
        topic_prefix = "%s.%s" % (sanitize_part(a.prefix), a.provider)
    recs = consume(a.bootstrap, topic_prefix, a.timeout)
    skipped = 0
    if a.committed_only:
        ok = committed_stamps(a.bootstrap, a.committed_only, a.timeout)
        kept = []
        for m in recs:
            st = txn_stamp(m)
            if st is not None and st not in ok:
                skipped += 1
                continue
            kept.append(m)
        recs = kept
    seen = defaultdict(int)
    unknown = unserved = misrouted = disorder = 0
    examples = defaultdict(list)
    last_time = {}
    dl_topic = "%s.deadletter" % sanitize_part(a.prefix)
    deadletter = unexpected_dl = 0
    recs.sort(key=lambda m: (m.topic(), m.partition(), m.offset()))
    for m in recs:
        if m.topic() == dl_topic:
            # a poison event, raw, with its source, reason and position
            deadletter += 1
            try:
                d = json.loads(m.value())
                k = (d.get("source"), (d.get("event") or {}).get("id"))
                ok = ((k in poison or k in poison_old) and d.get("reason")
                      and d.get("position")
                      and m.key() and m.key().decode() == d.get("source"))
            except Exception:
                k, ok = None, False
            if ok:
                if k in poison:
                    poison[k] += 1
            elif k and k[0] in a.allow_deadletter:
                pass
            else:
                unexpected_dl += 1
                examples["deadletter_unexpected"].append(m.value()[:200])
            continue
        try:
            ce = json.loads(m.value())
        except Exception:
            unknown += 1
            examples["unknown"].append(m.topic())
            continue
        k = (ce.get("sourcename"), ce.get("id"), ce.get("eventversion") or "")
        seen[k] += 1
        t = truth.get(k)
        if t is None:
            unknown += 1
            examples["unknown"].append(k)
            continue
        if not t["served"]:
            unserved += 1
            examples["unserved"].append(k)
        key = m.key().decode() if m.key() else None
        if m.topic() != t["topic"] or key != t["key"]:
            misrouted += 1
            examples["misrouted"].append((k, m.topic(), t["topic"], key,
                                          t["key"]))
        pk = (m.topic(), m.partition(), key)
        ts = ce.get("time")
        if pk in last_time and ts < last_time[pk]:
            disorder += 1
            examples["disorder"].append((key, last_time[pk], ts))
        last_time[pk] = ts
    if a.topic_counts:
        per = defaultdict(int)
        for m in recs:
            per[m.topic()] += 1
        with open(a.topic_counts, "w") as f:
            for t in sorted(per):
                f.write("%s %d\n" % (t, per[t]))
    dups = sum(1 for v in seen.values() if v > 1)
    for k, v in seen.items():
        if v > 1:
            examples["duplicates"].append((k, v))
    missing = [k for k, t in truth.items()
               if not t["superseded"] and k not in seen]
    examples["missing"] = missing[:10]
    poison_missing = [k for k, n in poison.items() if n == 0]
    poison_twice = [k for k, n in poison.items() if n > 1]
    examples["poison_missing"] = poison_missing[:10]
    examples["poison_twice"] = poison_twice[:10]
    summary = {
        "truth_versions": len(truth),
        "current_versions": sum(1 for t in truth.values()
                                if not t["superseded"]),
        "messages": len(recs),
        "aborted_skipped": skipped,
        "missing": len(missing),
        "unserved": unserved,
        "unknown": unknown,
        "duplicates": dups,
        "misrouted": misrouted,
        "disorder": disorder,
        "deadletter": deadletter,
        "deadletter_unexpected": unexpected_dl,
        "poison_missing": len(poison_missing),
        "poison_twice": len(poison_twice),
    }
    if not a.quiet or any(summary[x] for x in (
            "missing", "unserved", "unknown", "duplicates", "misrouted",
            "disorder", "deadletter_unexpected", "poison_missing",
            "poison_twice")):
        summary["examples"] = {k: [str(x) for x in v[:5]]
                               for k, v in examples.items() if v}
    print(json.dumps(summary))
    must = ["missing", "unserved", "unknown", "duplicates", "misrouted",
            "deadletter_unexpected", "poison_missing", "poison_twice"]
    if not a.allow_disorder:
        must.append("disorder")
    bad = any(summary[x] for x in must)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
