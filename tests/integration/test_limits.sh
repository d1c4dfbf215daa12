#!/usr/bin/env bash
# Memory bounds, each driven to its cap against a running evbridge, the
# simulator and a real Kafka broker; at the cap the behaviour is back-pressure
# or eviction, never growth, and nothing is lost:
#
#   poll.max_buffered_events  a newest-first walk publishes what it holds
#                             at the cap and goes on (warning logged)
#   http.max_held             with Kafka frozen, deliveries beyond the cap
#                             are answered 503 "overloaded" at once
#   kafka.queue_max_messages  with Kafka frozen, a poll that overflows the
#                             producer queue fails its page (publish error,
#                             backoff) and a webhook gets 503 "queue_full";
#                             after Kafka is back, all arrives exactly once
#   dedupe.capacity           1,500 events through a table of 1,000; the
#                             oldest ids are evicted and counted
#
# Three runs of evbridge, each with its own sources and topic prefix:
# A (exactly-once, the default) the walk buffer and the held cap; B and C
# (at-least-once) the producer queue and the dedupe table. In exactly-once
# mode the queue holds at most one transaction of kafka.batch.max_events
# at a time (docs/delivery.md), so B fills it in at-least-once mode, where
# every publish goes straight to the producer.
#
# http.max_body (per source) is driven in test_hostile_upstream.sh, the
# listener's per-connection input caps in test_hostile_clients.sh; unit
# level: test_webhook_intake.c (queue_full, overloaded with a fake sink),
# test_publish.c (-EAGAIN from a full producer queue), test_eb_dedupe.c.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka --own || { bad "kafka start"; finish; exit 1; }
# --late-visibility 0: the runs set poll.overlap 0 to count re-reads
# exactly, and with no overlap an event that becomes visible late is
# (rightly) never read again; late visibility is tested in test_upstreams.
start_sim --seed 29 --accounts close=4 --backlog 0 --rate 0 --limits off \
  --late-visibility 0 \
  --consolidate 0 --webhook-dup 0 --webhook-jitter 50ms \
  --webhook-attempts 40 --webhook-retry-base 200ms --webhook-retry-max 1s \
  || { bad "sim start"; finish; exit 1; }
SECRET3=$(head -1 "$T/sim.out" | $PY -c '
import json, sys
for a in json.load(sys.stdin)["accounts"]:
    if a["account"] == "close-3":
        print(a["webhook"]["secret"])')

# Run A: close-1 (walk buffer cap) and close-3 (webhooks only: polled
# once an hour).
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 3s --listen 127.0.0.1:0 > "$T/cfg0.json"
# cfg_for RUN: the base config reshaped for one run.
cfg_for() {
  $PY - "$T/cfg0.json" "$SECRET3" "$1" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
run = sys.argv[3]
want = {"A": ["close-1", "close-3"], "B": ["close-2", "close-3"],
        "C": ["close-4"]}[run]
cfg["kafka"]["topic_prefix"] = {"A": "crm", "B": "q", "C": "dd"}[run]
if run in ("B", "C"):
    cfg["kafka"]["delivery"] = "at-least-once"
if run == "B":
    cfg["kafka"]["queue_max_messages"] = 1000
if run == "C":
    cfg["dedupe"] = {"capacity": 1000}
cfg["http"]["max_held"] = 2
cfg["http"]["webhook_deadline"] = "1s"
srcs = []
for s in cfg["sources"]:
    if s["name"] not in want:
        continue
    s["poll"].update({"overlap": "0", "lag": "0", "start": "1h"})
    if s["name"] == "close-1":
        s["poll"]["max_buffered_events"] = 100
    if s["name"] == "close-3":
        s["poll"]["interval"] = "1h"
        s["webhook"] = {"secret": sys.argv[2]}
    srcs.append(s)
cfg["sources"] = srcs
json.dump(cfg, sys.stdout, indent=2)
PY
}
cfg_for A > "$T/cfg.json"
metric() { # metric 'NAME{labels}' -> value (0 if absent)
  curl -s -m 5 "$EB/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}
generate() { # generate ACCOUNT GROUPS: GROUPS x 100 events, 1 ms apart
  local i
  for i in $(seq 1 "$2"); do
    sim_control "{\"target\":\"$1\",\"generate\":100}"
  done
}
one() { sim_control "{\"target\":\"$1\",\"generate\":$2}"; }
start_eb() { # start_eb RUN: evbridge with cfg_for RUN -> EB_PID, EB
  cfg_for "$1" > "$T/cfg-$1.json"
  check "run $1: config valid" "$B/bin/evbridge" --check-config "$T/cfg-$1.json"
  rm -f "$T/port"
  (exec "$B/bin/evbridge" --config "$T/cfg-$1.json" --port-file "$T/port" \
    > "$T/evbridge-$1.log" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
  wait_for "evbridge (run $1) listening" 15 test -s "$T/port" || return 1
  EB="http://127.0.0.1:$(cat "$T/port")"
  ready() { curl -s -f -m 2 "$EB/readyz" >/dev/null; }
  wait_for "evbridge (run $1) ready" 15 ready
}
# truth_ok RUN PREFIX ACCOUNTS...: what the simulator served for these
# accounts is in Kafka under PREFIX exactly once. Order across a walk
# buffer flush is not guaranteed, so "disorder" is reported, not judged.
# Read with read_committed, as a subscriber would: nothing of an aborted
# transaction may be seen.
truth_ok() {
  local run=$1 prefix=$2 pat
  shift 2
  pat=$(printf '"account":"%s"|' "$@")
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  grep -E "${pat%|}" "$T/truth.jsonl" > "$T/truth-$run.jsonl"
  $PY tests/tools/truth_check.py --bootstrap "$BS" --prefix "$prefix" \
    --truth "$T/truth-$run.jsonl" --quiet --timeout 20 \
    > "$T/check-$run.json" 2>/dev/null
  $PY - "$T/check-$run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
bad = [k for k in ("missing", "unserved", "unknown", "duplicates",
                   "misrouted") if s[k]]
sys.exit(1 if bad or not s["messages"] else 0)
PY
}
truth_A() { truth_ok A crm close-1 close-3; }
truth_B() { truth_ok B q close-2 close-3; }
truth_C() { truth_ok C dd close-4; }
short() { $PY -c 'import json,sys; s=json.load(open(sys.argv[1])); s.pop("examples", None); print(json.dumps(s))' "$1"; }

# ==== run A (exactly-once): walk buffer, held requests ====================
start_eb A || { bad "evbridge start (run A)"; finish; exit 1; }
sim_control "{\"target\":\"close-3\",\"set\":{\"webhook_url\":\"$EB/webhooks/{account}\"}}"

generate close-1 6
check "walk buffer cap: 600 events arrive exactly once" \
  wait_for "close-1 published" 30 truth_A
short "$T/check-A.json"
log="$T/evbridge-A.log"
flushes=$(grep -c 'source=close-1 walk buffer full' "$log")
check "walk buffer cap: the walk published at the cap ($flushes times)" \
  test "$flushes" -ge 2
largest=$(grep -o 'source=close-1 walk buffer full ([0-9]* events)' "$log" | \
  grep -o '[0-9]* events' | sort -n | tail -1 | awk '{print $1}')
check "walk buffer cap: never more than the cap plus one page (${largest:-0})" \
  test "${largest:-0}" -ge 100 -a "${largest:-0}" -le 150

kafka_ctl pause
one close-3 6
held_max=0
for i in $(seq 1 12); do
  h=$(metric evbridge_webhook_held)
  [ "$h" -gt "$held_max" ] && held_max=$h
  sleep 0.25
done
over=$(metric 'evbridge_webhook_requests_total{source="close-3",status="503",reason="overloaded"}')
check "held cap: deliveries past http.max_held answered 503 overloaded ($over)" \
  test "$over" -ge 1
check "held cap: never more than 2 requests held ($held_max)" \
  test "$held_max" -le 2 -a "$held_max" -ge 1
kafka_ctl resume
check "run A: after Kafka is back, everything arrives exactly once" \
  wait_for "run A convergence" 60 truth_A
short "$T/check-A.json"
curl -s -f "$SIM_ORIGIN/_sim/stats?account=close-3" > "$T/stats3.json"
failed=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["accounts"][0]["webhooks"]["failed"])' "$T/stats3.json")
check "run A: no webhook delivery given up ($failed)" test "$failed" -eq 0
stop_pid $EB_PID; rc=$?
check "run A: evbridge exits 0 on SIGTERM" test "$rc" -eq 0

# ==== run B (at-least-once): the producer queue ===========================
start_eb B || { bad "evbridge start (run B)"; finish; exit 1; }
sim_control "{\"target\":\"close-3\",\"set\":{\"webhook_url\":\"$EB/webhooks/{account}\"}}"
# close-3's earlier events come in by the first walk; wait for them so
# that the queue fills with close-2's alone.
check "run B: the first walks are done" wait_for "run B first walks" 30 truth_B
kafka_ctl pause
# At once, so that one walk sees them all (a walk publishes, and waits
# for Kafka, before it walks again).
one close-2 1200
qfull() { [ "$(metric evbridge_kafka_queue_full_total)" -ge 1 ]; }
check "queue cap: the producer queue filled up (1,000 messages)" \
  wait_for "producer queue full" 20 qfull
qmsgs=$(metric evbridge_kafka_producer_queue_messages)
check "queue cap: the queue stays at its bound ($qmsgs <= 1000)" \
  test "$qmsgs" -le 1000 -a "$qmsgs" -ge 900
one close-3 1
qf503() {
  [ "$(metric 'evbridge_webhook_requests_total{source="close-3",status="503",reason="queue_full"}')" -ge 1 ]
}
check "queue cap: a webhook is answered 503 queue_full" \
  wait_for "503 queue_full" 10 qf503
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$EB_PID/status")
echo "VmRSS with Kafka frozen and the queue full: ${rss} kB"
kafka_ctl resume
pub_err() {
  [ "$(metric 'evbridge_source_errors_total{source="close-2",provider="close",kind="publish"}')" -ge 1 ]
}
check "queue cap: the overflowing page failed and was retried (publish error)" \
  wait_for "close-2 publish error" 30 pub_err
check "run B: after Kafka is back, everything arrives exactly once" \
  wait_for "run B convergence" 60 truth_B
short "$T/check-B.json"
stop_pid $EB_PID; rc=$?
check "run B: evbridge exits 0 on SIGTERM" test "$rc" -eq 0

# ==== run C (at-least-once): the dedupe table =============================
start_eb C || { bad "evbridge start (run C)"; finish; exit 1; }
generate close-4 15
published() {
  [ "$(metric 'evbridge_source_events_published_total{source="close-4",provider="close"}')" -ge 1500 ]
}
check "dedupe cap: 1,500 events published" wait_for "close-4 published" 30 published
entries=$(metric evbridge_dedupe_entries)
evicted=$(metric 'evbridge_dedupe_evictions_total{reason="capacity"}')
check "dedupe cap: the table holds at most its capacity ($entries <= 1000)" \
  test "$entries" -le 1000 -a "$entries" -ge 900
check "dedupe cap: the oldest ids were evicted and counted ($evicted)" \
  test "$evicted" -ge 500
check "dedupe cap: still exactly once (re-reads stay within the capacity)" \
  wait_for "close-4 truth" 20 truth_C
short "$T/check-C.json"
stop_pid $EB_PID; rc=$?
check "run C: evbridge exits 0 on SIGTERM" test "$rc" -eq 0
finish
