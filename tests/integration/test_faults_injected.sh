#!/usr/bin/env bash
# Fault injection of broker answers a real broker cannot be made to give
# (docs/delivery.md "Fault injection", scenario c): evbridge runs as a
# separate process against a standalone evbridge-kafka-mock (librdkafka's
# mock cluster, 3 brokers, errors pushed through its control port) and
# the simulator with its own faults on. Retriable answers
# (NOT_ENOUGH_REPLICAS on Produce, COORDINATOR_NOT_AVAILABLE and
# CONCURRENT_TRANSACTIONS on AddPartitionsToTxn and EndTxn,
# NOT_COORDINATOR) must be ridden out inside the transaction; abortable
# ones (UNKNOWN_PRODUCER_ID on EndTxn, TOPIC_AUTHORIZATION_FAILED on
# AddPartitionsToTxn, UNKNOWN_PRODUCER_ID on Produce) must abort and redo
# the transaction. Then Kafka must converge to the simulator's ground
# truth: zero missing, zero duplicated.
#
# The mock ignores read_committed, so the check skips the events of
# transactions proven aborted (truth_check.py --committed-only, from the
# evbridge-txn header and the .seen records). Crashes, outages and
# fencing run on a real broker in test_faults.sh.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh
. tests/integration/lib_faults.sh

t_start=$(date +%s)
SEED=${EB_FAULTS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
SIM_RATE=5
RESULTS=()
echo "injected broker errors: seed $SEED (EB_FAULTS_SEED=$SEED replays it)"

start_kmock_ctl 3 || { bad "kafka mock start"; finish; exit 1; }
# The transaction coordinator is pinned to broker 1, so errors pushed on
# broker 1 reach evbridge's transactional requests.
check "pin the transaction coordinator" \
  kctl coordinator transaction evbridge-faults 1
start_sim --seed "$SEED" --accounts kommo=1,close=1,kota=1 \
  --backlog 500 --backlog-span 3h --rate $SIM_RATE --consolidate close=0.3 \
  --faults '500=0.03,503=0.02,reset=0.02,truncated=0.01,malformed=0.01,html=0.01' \
  || { bad "sim start"; finish; exit 1; }
# message.timeout.ms 5 s: an outage longer than that makes queued messages
# expire, which exercises abort + redo (docs/delivery.md); short reconnect
# back-off so the outage ends promptly for the client too.
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --kafka-prop message.timeout.ms=5000 \
  --kafka-prop reconnect.backoff.max.ms=1000 > "$T/cfg0.json"
$PY - "$T/cfg0.json" > "$T/cfg.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["kafka"]["transactional_id"] = "evbridge-faults"
json.dump(cfg, sys.stdout, indent=2)
EOF
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

start_eb main
MAIN_PID=$EB_PID MAIN_LOG=$EB_LOG
wait_for "restored" 30 is_ready "$MAIN_LOG" || bad "evbridge ready"

# ---- c. injected broker errors -------------------------------------------
# The 2.0.2 mock looks at a broker's own error stack for an ApiKey first
# and, once that broker has one (even emptied), never at the cluster-wide
# stack. So the cluster-wide pushes (rd_kafka_mock_push_request_errors)
# come first, the per-broker ones after.
sleep 1
# Abortable, one at a time, cluster-wide: each fails one transaction,
# which the pipeline aborts and redoes.
redone() { grep -c "transaction aborted; redoing" "$MAIN_LOG"; }
for spec in "EndTxn UNKNOWN_PRODUCER_ID" \
            "AddPartitionsToTxn TOPIC_AUTHORIZATION_FAILED" \
            "Produce UNKNOWN_PRODUCER_ID"; do
  n0=$(redone)
  check "c: push abortable $spec" kctl push-errors $spec
  more_redone() { [ "$(redone)" -gt "$n0" ]; }
  check "c: abortable $spec: transaction aborted and redone" \
    wait_for "abort after $spec" 30 more_redone
done
# Retriable, per broker, so the mock can say when they are consumed: on
# the coordinator (broker 1) and on the leader of evbridge.seen, which
# every transaction writes. librdkafka retries them inside the
# transaction.
seen_leader=$(leader_of evbridge.seen)
echo "  c: evbridge.seen partition 0 leader: broker ${seen_leader:-?}"
check "c: leader of evbridge.seen known" test -n "$seen_leader"
check "c: push retriable AddPartitionsToTxn errors" \
  kctl push-broker-errors 1 AddPartitionsToTxn COORDINATOR_NOT_AVAILABLE 0 \
  CONCURRENT_TRANSACTIONS 0 NOT_COORDINATOR 0
check "c: push retriable EndTxn errors" \
  kctl push-broker-errors 1 EndTxn CONCURRENT_TRANSACTIONS 0 \
  COORDINATOR_NOT_AVAILABLE 0 NOT_COORDINATOR 0
check "c: push retriable Produce errors" \
  kctl push-broker-errors "${seen_leader:-1}" Produce NOT_ENOUGH_REPLICAS 0 \
  NOT_ENOUGH_REPLICAS 100 NOT_ENOUGH_REPLICAS_AFTER_APPEND 0
check "c: retriable AddPartitionsToTxn errors consumed" \
  wait_for "AddPartitionsToTxn errors consumed" 30 \
  errors_consumed 1 AddPartitionsToTxn
check "c: retriable EndTxn errors consumed" \
  wait_for "EndTxn errors consumed" 30 errors_consumed 1 EndTxn
check "c: retriable Produce errors consumed" \
  wait_for "Produce errors consumed" 30 \
  errors_consumed "${seen_leader:-1}" Produce
check "c: evbridge survived the injected errors" alive $MAIN_PID
converge_check "c-broker-errors"

# ---- the end: SIGTERM drains and exits 0 ---------------------------------
stop_pid $MAIN_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
check "evbridge logged no sanitizer report" \
  bash -c "! grep -q 'Sanitizer' '$MAIN_LOG'"
echo "results (seed $SEED, $(( $(date +%s) - t_start )) s):"
for r in "${RESULTS[@]}"; do echo "  $r"; done
finish
