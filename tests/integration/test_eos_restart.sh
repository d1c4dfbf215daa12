#!/usr/bin/env bash
# Exactly-once across restarts: evbridge (delivery "exactly-once", the
# default) against the simulator (backlog + live arrivals) and a standalone
# Kafka broker is stopped mid-run with SIGTERM three times and killed with
# SIGKILL three times, restarted each time, then left to converge. Every
# start restores the dedupe ids and checkpoints from the state topics, so
# Kafka must hold the ground truth: nothing missing, nothing twice.
#
# Kafka is read with read_committed, as a subscriber would: the records
# of a transaction a SIGKILL cut short must never be seen, and the
# checker counts every record it reads.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 23 --accounts kommo=1,close=1,kota=1 \
  --backlog 600 --backlog-span 3h --rate 6 --consolidate close=0.3 \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s > "$T/cfg.json"
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

run=0
start_eb() {
  run=$((run + 1))
  (exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.$run.log" \
    2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
}
restored_in() { grep -q "state restored: ready" "$T/evbridge.$1.log"; }

for sig in TERM TERM TERM KILL KILL KILL; do
  start_eb
  wait_for "run $run restored" 20 restored_in $run || bad "run $run start"
  sleep $((1 + run % 3))
  kill -$sig $EB_PID 2>/dev/null
  wait $EB_PID; rc=$?
  if [ $sig = TERM ]; then
    check "run $run: SIGTERM exits 0" test "$rc" -eq 0
  else
    check "run $run: SIGKILL" test "$rc" -eq 137
  fi
done
# Later runs restored what earlier ones committed.
check "restarts restore ids and checkpoints" \
  grep -Eq "restored [1-9][0-9]* ids and [1-9][0-9]* checkpoints" \
  "$T/evbridge.$run.log"

start_eb
wait_for "final run restored" 20 restored_in $run || bad "final run start"
sleep 3
sim_control '{"target":"all","set":{"rate":0}}'
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
 --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "kafka converges to the ground truth (committed transactions)" \
  wait_for "convergence" 60 converged
cat "$T/check.json"
$PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
  --quiet --timeout 20 > "$T/check_raw.json" 2>&1
echo "  without skipping aborted transactions: $(cat "$T/check_raw.json" |
  head -c 300)"
field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
check "zero missing" test "$(field "$T/check.json" missing)" -eq 0
check "zero duplicated" test "$(field "$T/check.json" duplicates)" -eq 0
check "zero missing even counting aborted records" \
  test "$(field "$T/check_raw.json" missing)" -eq 0
stop_pid $EB_PID; rc=$?
check "final evbridge exits 0 on SIGTERM" test "$rc" -eq 0
finish
