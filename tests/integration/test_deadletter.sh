#!/usr/bin/env bash
# Poison events end to end: one event per provider that cannot be
# normalized (the simulator's control "poison") goes raw, with its source,
# reason and position, to the dead-letter topic, exactly once, in the same
# transaction as the checkpoint that moves past it; every other event of
# the same pages reaches its topic exactly once; the sources go on; the
# metric counts each. A page that does not parse at all (a cut-off body)
# is retried instead, and the log says for how long the source has been
# stuck.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kmock 1 || { bad "kafka mock start"; finish; exit 1; }
start_sim --seed 21 --accounts kommo=1,close=1,kota=1 \
  --backlog 60 --backlog-span 20m --rate 0 --consolidate 0 \
  || { bad "sim start"; finish; exit 1; }
# one poison event per account, between ordinary ones
sim_control '{"target":"all","generate":5}'
curl -s -f -X POST -d '{"target":"all","poison":1}' "$SIM_CTL" \
  > "$T/poisoned.json"
sim_control '{"target":"all","generate":5}'
check "three poison events made" $PY -c '
import json, sys
p = json.load(open(sys.argv[1]))["poisoned"]
sys.exit(0 if sum(len(v) for v in p.values()) == 3 else 1)' "$T/poisoned.json"

$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --listen 127.0.0.1:0 > "$T/cfg.json"
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"
(exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
wait_for "evbridge listening" 15 test -s "$T/port" \
  || { bad "evbridge start"; cat "$T/evbridge.log"; finish; exit 1; }
EB="http://127.0.0.1:$(cat "$T/port")"

converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "kafka holds the truth, the poison events on the dead-letter topic" \
  wait_for "convergence" 60 converged
cat "$T/check.json"
check "three dead-letter records" $PY -c '
import json, sys
c = json.load(open(sys.argv[1]))
sys.exit(0 if c["deadletter"] == 3 and c["poison_missing"] == 0 else 1)' \
  "$T/check.json"

# Later events of every source still arrive: the sources went on.
sim_control '{"target":"all","generate":5}'
check "the sources go on after the poison" \
  wait_for "convergence after more events" 30 converged

curl -s "$EB/metrics" > "$T/metrics.txt"
check "metric counts one poison event per source" $PY -c '
import re, sys
v = {}
for line in open(sys.argv[1]):
    m = re.match(r"evbridge_source_deadletter_total\{source=\"([^\"]+)\".*\} (\S+)", line)
    if m:
        v[m.group(1)] = float(m.group(2))
sys.exit(0 if v == {"kommo-1": 1, "close-1": 1, "kota-1": 1} else 1)' \
  "$T/metrics.txt"
check "the log names source, position and reason" grep -q \
  'poison event deadletter-.* at page [0-9]*, .* goes to the dead-letter topic crm.deadletter' \
  "$T/evbridge.log"

# A page that does not parse at all is retried, not dead-lettered, and the
# log says how long the source has been stuck.
sim_control '{"target":"kota-1","set":{"faults":"truncated@next=3"}}'
sim_control '{"target":"kota-1","generate":3}'
check "a cut-off page is retried until it parses" \
  wait_for "convergence after cut-off pages" 30 converged
check "the log says how long the source is stuck" grep -q \
  'source=kota-1 .*stuck for [0-9]' "$T/evbridge.log"

stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
stop_pid $SIM_PID
finish
