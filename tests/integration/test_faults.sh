#!/usr/bin/env bash
# Fault injection: exactly-once under crashes, outages, broker errors and
# a second instance (issue "Exactly-once", docs/delivery.md "Fault
# injection"). evbridge runs as a separate process against a standalone
# evbridge-kafka-mock (3 brokers, faults injected through its control
# port) and the simulator with its own faults on (HTTP 500/503, resets,
# truncated and malformed pages). After each scenario live arrivals stop
# and Kafka must converge to the simulator's ground truth: zero missing,
# zero duplicated (truth_check.py --committed-only).
#
#   a. SIGKILL at random moments (start-up, restore, mid-transaction),
#      each followed by a restart: 5 kills here, EB_FAULTS_FULL=1 (make
#      test-faults) 24.
#   b. every broker down for a few seconds (longer than message.timeout.ms,
#      so queued messages expire and the transaction is aborted and
#      redone), then back.
#   c. errors pushed into the broker's answers: retriable ones
#      (NOT_ENOUGH_REPLICAS on Produce, COORDINATOR_NOT_AVAILABLE and
#      CONCURRENT_TRANSACTIONS on AddPartitionsToTxn and EndTxn,
#      NOT_COORDINATOR) and abortable ones (UNKNOWN_PRODUCER_ID on EndTxn,
#      TOPIC_AUTHORIZATION_FAILED on AddPartitionsToTxn, UNKNOWN_PRODUCER_ID
#      on Produce).
#   d. a second instance with the same transactional.id: the old one must
#      stop ("fenced", exit 1), the new one carries on.
#
# Why the fence is injected: librdkafka 2.0.2's mock cluster does not
# fence. A second InitProducerId for the same transactional.id neither
# bumps the epoch the first producer uses nor aborts its open
# transaction, so the first keeps committing (test_kafka_txn.c,
# test_mock_does_not_fence). A real coordinator answers every later
# request of the old producer with PRODUCER_FENCED / INVALID_PRODUCER_EPOCH
# from the moment the new one has initialised. The scenario reproduces
# exactly that: A is frozen (SIGSTOP) so nothing of it reaches the cluster
# after B's InitProducerId; B starts, restores and becomes ready; B is
# frozen; the answers a real broker gives a fenced producer are pushed
# for Produce (INVALID_PRODUCER_EPOCH), AddPartitionsToTxn and EndTxn
# (PRODUCER_FENCED); A resumes, gets them and must stop; the errors A did
# not use are cleared; B resumes and carries on.
#
# EB_FAULTS_SEED=N replays the same kill moments; EB_FAULTS_KILLS=N
# overrides the number of kills.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh
. tests/integration/lib_faults.sh

t_start=$(date +%s)
FULL=${EB_FAULTS_FULL:-0}
if [ "$FULL" = 1 ]; then KILLS=${EB_FAULTS_KILLS:-24}; else
  KILLS=${EB_FAULTS_KILLS:-5}; fi
SEED=${EB_FAULTS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
SIM_RATE=5
RESULTS=()
echo "fault suite: $([ "$FULL" = 1 ] && echo full || echo light)," \
  "$KILLS kills, seed $SEED (EB_FAULTS_SEED=$SEED replays it)"

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

# ---- a. SIGKILL at random moments ----------------------------------------
killed=0 killed_ready=0 died=0
for ((k = 1; k <= KILLS; k++)); do
  start_eb "kill$k"
  # A random moment 0.2 .. 4.0 s after the start: some land in the
  # start-up and the restore, most while transactions run.
  ms=$((200 + RANDOM % 3800))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  if alive $EB_PID; then
    is_ready "$EB_LOG" && killed_ready=$((killed_ready + 1))
    kill -KILL $EB_PID
    wait $EB_PID; rc=$?
    [ "$rc" -eq 137 ] && killed=$((killed + 1))
  else
    wait $EB_PID; rc=$?
    died=$((died + 1))
    echo "  run $k exited by itself with $rc before its kill:"
    tail -5 "$EB_LOG" | sed 's/^/    | /'
  fi
done
echo "  $killed SIGKILLs ($killed_ready after the restore), $died early exits"
check "a: $KILLS SIGKILLs at random moments, each a restart" \
  test "$killed" -eq "$KILLS"
# Any later run (the last one may have been killed before its restore).
check "a: later runs restored ids and checkpoints" \
  grep -Eq "restored [1-9][0-9]* ids and [1-9][0-9]* checkpoints" \
  "$T"/evbridge.*.kill*.log

start_eb main
MAIN_PID=$EB_PID MAIN_LOG=$EB_LOG
wait_for "restored after the kills" 30 is_ready "$MAIN_LOG" \
  || bad "a: evbridge ready after the kills"
converge_check "a-sigkill"

# ---- b. every broker down, then back -------------------------------------
sleep 2
redone0=$(grep -c "transaction aborted; redoing" "$MAIN_LOG")
check "b: all brokers down" kctl broker-down all
sleep $([ "$FULL" = 1 ] && echo 9 || echo 7)
check "b: all brokers up" kctl broker-up all
sleep 2
check "b: evbridge rode out the outage" alive $MAIN_PID
echo "  b: $(( $(grep -c "transaction aborted; redoing" "$MAIN_LOG") - \
  redone0 )) transaction(s) aborted and redone around the outage"
converge_check "b-brokers-down"

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

# ---- d. a second instance with the same transactional.id -----------------
# The fencing answers go through the cluster-wide stack (it can be
# cleared; a broker's own cannot), which broker 1 no longer reads for the
# transactional requests (c). So the coordinator moves to broker 2 first:
# itself a fault (NOT_COORDINATOR, then FindCoordinator) that A must ride.
check "d: move the transaction coordinator to broker 2" \
  kctl coordinator transaction evbridge-faults 2
sleep 3
check "d: instance A rode the coordinator move" alive $MAIN_PID
A_PID=$MAIN_PID A_LOG=$MAIN_LOG
kill -STOP $A_PID
start_eb second
B_PID=$EB_PID B_LOG=$EB_LOG
wait_for "instance B restored" 30 is_ready "$B_LOG" \
  || bad "d: instance B ready"
kill -STOP $B_PID
# What a real coordinator answers the old producer from now on.
check "d: push fencing answers for A's Produce" \
  kctl push-errors Produce INVALID_PRODUCER_EPOCH INVALID_PRODUCER_EPOCH \
  INVALID_PRODUCER_EPOCH INVALID_PRODUCER_EPOCH INVALID_PRODUCER_EPOCH \
  INVALID_PRODUCER_EPOCH INVALID_PRODUCER_EPOCH INVALID_PRODUCER_EPOCH
check "d: push fencing answers for A's AddPartitionsToTxn" \
  kctl push-errors AddPartitionsToTxn PRODUCER_FENCED PRODUCER_FENCED \
  PRODUCER_FENCED PRODUCER_FENCED
check "d: push fencing answers for A's EndTxn" \
  kctl push-errors EndTxn PRODUCER_FENCED PRODUCER_FENCED PRODUCER_FENCED \
  PRODUCER_FENCED
kill -CONT $A_PID
a_gone() { ! alive $A_PID; }
wait_for "instance A stops" 60 a_gone
if alive $A_PID; then
  bad "d: instance A stopped after being fenced"
  kill -KILL $A_PID
fi
wait $A_PID; rc=$?
check "d: instance A exits 1 (fatal: fenced), not by a signal" \
  test "$rc" -eq 1
check "d: instance A says it was fenced" \
  grep -q "fenced: another evbridge with transactional.id=evbridge-faults" \
  "$A_LOG"
check "d: instance A logged no sanitizer report" \
  bash -c "! grep -q 'Sanitizer' '$A_LOG'"
for api in Produce AddPartitionsToTxn EndTxn; do
  kctl clear-errors $api >/dev/null
done
kill -CONT $B_PID
sleep 3
check "d: instance B carries on" alive $B_PID
converge_check "d-fenced"
# Convergence above needs B: the events that arrived while A was frozen
# or fenced can only have been published by B.
check "d: instance B was not fenced" \
  bash -c "! grep -q 'fenced' '$B_LOG'"

# ---- the end: SIGTERM drains and exits 0 ---------------------------------
stop_pid $B_PID; rc=$?
check "instance B exits 0 on SIGTERM" test "$rc" -eq 0
check "instance B logged no sanitizer report" \
  bash -c "! grep -q 'Sanitizer' '$B_LOG'"
echo "results (seed $SEED, $(( $(date +%s) - t_start )) s):"
for r in "${RESULTS[@]}"; do echo "  $r"; done
finish
