#!/usr/bin/env bash
# SIGHUP reload on a running evbridge: a source removed stops polling, a
# source added starts, a changed source restarts from its checkpoint, and
# none of it re-publishes anything or restarts the Kafka producer. A
# broken file on reload changes nothing and the process keeps running.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 21 --accounts kommo=0,close=2,kota=1 --backlog 150 \
  --rate 2 || { bad "sim start"; finish; exit 1; }

# Config A: close-1 and kota-1. Config B: close-1 (interval changed),
# close-2 added, kota-1 removed.
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --listen 127.0.0.1:0 > "$T/all.json"
$PY - "$T/all.json" "$T/a.json" "$T/b.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
src = {s["name"]: s for s in cfg["sources"]}
a = dict(cfg, sources=[src["close-1"], src["kota-1"]])
c1 = json.loads(json.dumps(src["close-1"]))
c1["poll"]["interval"] = "2s"
b = dict(cfg, sources=[c1, src["close-2"]])
json.dump(a, open(sys.argv[2], "w"))
json.dump(b, open(sys.argv[3], "w"))
PY
cp "$T/a.json" "$T/evbridge.json"
(exec "$B/bin/evbridge" --config "$T/evbridge.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)

requests() { # requests ACCOUNT -> the simulator's request count
  curl -s -f "$SIM_ORIGIN/_sim/stats?account=$1" | $PY -c \
    'import json,sys; print(json.load(sys.stdin)["accounts"][0]["requests"])'
}
polled() { [ "$(requests "$1")" -ge "$2" ]; }
check "config A: kota-1 is polled" wait_for "kota-1 polled" 20 polled kota-1 3
check "config A: close-2 is not" test "$(requests close-2)" -eq 0

# A broken file: reported, nothing changes.
echo '{"sources":[{"name":"x","provider":"close","poll":{"interval":"soon"}}]}' \
  > "$T/evbridge.json"
kill -HUP "$EB_PID"
check "broken reload is reported with the key" \
  wait_for "reload error" 10 grep -q "reload failed.*sources\[0\]" "$T/evbridge.log"
sleep 1
check "still running after a broken reload" kill -0 "$EB_PID"
k1=$(requests kota-1)
sleep 2.5
check "kota-1 still polled after the broken reload" polled kota-1 $((k1 + 1))

# close-1's counters, before the reload changes it.
counter() { # counter METRIC SOURCE -> its value on /metrics
  curl -s "http://127.0.0.1:$(cat "$T/port")/metrics" |
    awk -v m="$1" -v s="source=\"$2\"" \
      'index($0, m "{") == 1 && index($0, s) { v += $NF } END { print v + 0 }'
}
m_before="$(counter evbridge_source_polls_total close-1) \
$(counter evbridge_source_events_received_total close-1) \
$(counter evbridge_source_events_published_total close-1)"

# The real reload.
cp "$T/b.json" "$T/evbridge.json"
kill -HUP "$EB_PID"
check "reload applied" wait_for "reload done" 10 \
  grep -q "reload done: 1 added, 1 removed, 1 changed" "$T/evbridge.log"
m_after="$(counter evbridge_source_polls_total close-1) \
$(counter evbridge_source_events_received_total close-1) \
$(counter evbridge_source_events_published_total close-1)"
carried_on() { # polls, received, published: none went back
  set -- $m_before $m_after
  [ "$1" -gt 0 ] && [ "$2" -gt 0 ] && [ "$4" -ge "$1" ] && [ "$5" -ge "$2" ] &&
    [ "$6" -ge "$3" ]
}
check "a changed source's counters all carry on ($m_before -> $m_after)" carried_on
k1=$(requests kota-1)
check "close-2 starts polling" wait_for "close-2 polled" 20 polled close-2 2
sleep 3
check "kota-1 stopped ($k1 -> $(requests kota-1) requests)" \
  test "$(requests kota-1)" -le $((k1 + 1))
check "the producer was not restarted" \
  test "$(grep -c 'producer ready' "$T/evbridge.log")" -eq 1

# A restart-only setting changed, then reverted: warned once, not twice
# (the revert brings back what runs).
$PY - "$T/b.json" "$T/b-dedupe.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("dedupe", {})["capacity"] = 12345
json.dump(cfg, open(sys.argv[2], "w"))
PY
cp "$T/b-dedupe.json" "$T/evbridge.json"
kill -HUP "$EB_PID"
check "a restart-only change is warned about" wait_for "restart warning" 10 \
  grep -q "dedupe settings changed" "$T/evbridge.log"
cp "$T/b.json" "$T/evbridge.json"
kill -HUP "$EB_PID"
reloads_done() { [ "$(grep -c 'reload done' "$T/evbridge.log")" -ge "$1" ]; }
check "the revert is applied" wait_for "third reload" 10 reloads_done 3
check "the revert is not warned about" \
  test "$(grep -c 'dedupe settings changed' "$T/evbridge.log")" -eq 1
check "counts leave out nothing enabled" \
  grep -q "reload done: 0 added, 0 removed, 0 changed, 2 source(s)" "$T/evbridge.log"

# Converge: everything of close-1, close-2 and kota-1 up to the reload is
# in Kafka exactly once (kota-1's later events are not expected).
sim_control '{"target":"all","set":{"rate":0}}'
converged() {
  curl -s -f "$SIM_ORIGIN/_sim/truth?provider=close" > "$T/truth-close.jsonl"
  $PY tests/tools/truth_check.py --bootstrap "$BS" \
    --truth "$T/truth-close.jsonl" --quiet --timeout 20 --provider close \
    > "$T/check.json"
}
check "close-1 and close-2 complete, no duplicates" \
  wait_for "close convergence" 60 converged
cat "$T/check.json"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0" test "$rc" -eq 0
finish
