#!/usr/bin/env bash
# A broker dies while the others live: three real Kafka nodes (combined
# broker/controller, replication factor 3, min ISR 2 for the transaction
# log), evbridge polling the simulator with live arrivals. One node at a
# time is killed (kill -9) mid-stream and later restarted: first the
# transaction coordinator of evbridge's transactional.id, then the leader
# of a state topic partition. evbridge must ride each one out without a
# restart, and Kafka, read with read_committed, must hold the simulator's
# truth exactly once.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka --own --nodes 3 || { bad "kafka start"; finish; exit 1; }
start_sim --seed 41 --accounts kommo=1,close=1,kota=1 \
  --backlog 300 --backlog-span 2h --rate 5 --consolidate close=0.3 \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --kafka-prop reconnect.backoff.max.ms=1000 \
  > "$T/cfg.json"
(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
ready() { grep -q "state restored: ready" "$T/evbridge.log"; }
check "evbridge ready on three nodes" wait_for "evbridge ready" 60 ready

truth_ok() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2> "$T/check.err"
}
field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
converge() { # converge NAME
  sim_control '{"target":"all","set":{"rate":0}}'
  check "$1: Kafka converges to the truth" wait_for "$1: convergence" 90 truth_ok
  echo "  $1: $(head -c 300 "$T/check.json")"
  check "$1: zero missing" test "$(field "$T/check.json" missing)" = 0
  check "$1: zero duplicated" test "$(field "$T/check.json" duplicates)" = 0
  sim_control '{"target":"all","set":{"rate":5}}'
}
# leader_of TOPIC [PARTITION]: the node kcat names as the partition's leader
leader_of() {
  timeout 20 kcat -b "$BS" -L -t "$1" 2>/dev/null |
    sed -n "s/.*partition ${2:-0}, leader \([0-9]*\),.*/\1/p" | head -1
}
# The coordinator of a transactional.id leads partition
# abs(String.hashCode()) % 4 of __transaction_state (4 partitions on the
# test broker; Kafka's Utils.abs maps MIN_VALUE to 0).
txn_part=$($PY -c '
h = 0
for ch in "evbridge-main":
    h = (31 * h + ord(ch)) & 0xffffffff
if h >= 1 << 31:
    h -= 1 << 32
print(0 if h == -(1 << 31) else abs(h) % 4)')
sleep 5
victim=$(leader_of __transaction_state "$txn_part")
check "the transaction coordinator is known (node ${victim:-?})" test -n "$victim"
check "node $victim killed" kafka_ctl kill "${victim:-1}"
sleep 8
check "evbridge rides out the death of node $victim" kill -0 $EB_PID
converge "node-$victim-dead"
check "node $victim restarted" kafka_ctl restart "${victim:-1}"
sleep 5

victim=$(leader_of evbridge.seen)
check "the leader of evbridge.seen is known (node ${victim:-?})" test -n "$victim"
check "node $victim killed" kafka_ctl kill "${victim:-1}"
sleep 8
check "evbridge rides out the death of node $victim" kill -0 $EB_PID
converge "seen-leader-$victim-dead"
check "node $victim restarted" kafka_ctl restart "${victim:-1}"

stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
grep -c "transaction aborted; redoing" "$T/evbridge.log" |
  sed 's/^/  transactions aborted and redone: /'
finish
