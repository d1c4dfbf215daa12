#!/usr/bin/env bash
# Fault injection on a real Apache Kafka broker (tests/kafka/broker):
# exactly-once under crashes, broker outages and a zombie instance
# (docs/delivery.md "Fault injection"). evbridge runs as a separate
# process against one KRaft broker and the simulator with its own faults
# on (HTTP 500/503, resets, truncated and malformed pages). After each
# scenario live arrivals stop and Kafka, read with read_committed as a
# subscriber reads it, must converge to the simulator's ground truth:
# zero missing, zero duplicated, nothing of an aborted transaction.
#
#   a. SIGKILL at random moments (start-up, restore, inside a transaction,
#      between produce and commit), each followed by a restart: 20 kills
#      here, EB_FAULTS_FULL=1 (make test-faults) 24.
#   b. the broker killed (kill -9) and restarted mid-stream; then the
#      broker frozen (SIGSTOP) for longer than transaction.timeout.ms, so
#      the coordinator aborts the open transaction. Signed webhooks sent
#      while Kafka is away are answered 503 and accepted once it is back.
#      evbridge either rides it out or exits with a clear error; it is
#      then restarted, as Kubernetes would.
#   d. zombie fencing: instance A is frozen (SIGSTOP), B starts with the
#      same config, A resumes: the broker fences A, which exits 1 within
#      seconds saying so; B carries on; nothing duplicated.
#
# Broker answers a real broker cannot be made to give (retriable and
# abortable error codes) are injected on librdkafka's mock in
# test_faults_injected.sh (scenario c).
#
# EB_FAULTS_SEED=N replays the same kill moments; EB_FAULTS_KILLS=N
# overrides the number of kills.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

t_start=$(date +%s)
FULL=${EB_FAULTS_FULL:-0}
if [ "$FULL" = 1 ]; then KILLS=${EB_FAULTS_KILLS:-24}; else
  KILLS=${EB_FAULTS_KILLS:-20}; fi
SEED=${EB_FAULTS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
SIM_RATE=5
TXN_TIMEOUT_MS=10000
RESULTS=()
echo "fault suite (real broker): $([ "$FULL" = 1 ] && echo full || echo light)," \
  "$KILLS kills, seed $SEED (EB_FAULTS_SEED=$SEED replays it)"

start_kafka --own || { bad "kafka start"; finish; exit 1; }
start_sim --seed "$SEED" --accounts kommo=1,close=1,kota=1 \
  --backlog 500 --backlog-span 3h --rate $SIM_RATE --consolidate close=0.3 \
  --faults '500=0.03,503=0.02,reset=0.02,truncated=0.01,malformed=0.01,html=0.01' \
  || { bad "sim start"; finish; exit 1; }
# transaction.timeout.ms 10 s so that scenario b can outlast it; short
# reconnect back-off so an outage ends promptly for the client too.
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --webhooks --listen 127.0.0.1:0 \
  --kafka-prop transaction.timeout.ms=$TXN_TIMEOUT_MS \
  --kafka-prop reconnect.backoff.max.ms=1000 > "$T/cfg0.json"
$PY - "$T/cfg0.json" > "$T/cfg.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["kafka"]["transactional_id"] = "evbridge-faults"
json.dump(cfg, sys.stdout, indent=2)
EOF
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"
SECRET=$(head -1 "$T/sim.out" | $PY -c '
import json, sys
for a in json.load(sys.stdin)["accounts"]:
    if a["provider"] == "close":
        print(a["webhook"]["secret"])')

EB_RUN=0
# start_eb NAME: an evbridge process -> EB_PID, EB_LOG, EB_URL
start_eb() {
  EB_RUN=$((EB_RUN + 1))
  EB_LOG="$T/evbridge.$EB_RUN.$1.log"
  rm -f "$T/port"
  (exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
    > "$EB_LOG" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
}
eb_url() { wait_for "listening" 15 test -s "$T/port" && \
  EB_URL="http://127.0.0.1:$(cat "$T/port")"; }
is_ready() { grep -q "state restored: ready" "$1"; }
alive() { kill -0 "$1" 2>/dev/null; }

# Kafka against the simulator's truth, read with read_committed and
# nothing skipped; writes $T/check.json. The signed webhooks of scenario
# b carry events of their own, which the simulator never served: they
# are the "unknown" messages, at least one per webhook answered 200
# (WH_OK) and at most one per webhook sent (WH_SENT).
WH_SENT=0 WH_OK=0
truth_ok() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null \
    || return 1
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
  $PY - "$T/check.json" "$WH_OK" "$WH_SENT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lo, hi = int(sys.argv[2]), int(sys.argv[3])
ok = (s["missing"] == 0 and s["duplicates"] == 0 and s["unserved"] == 0
      and s["misrouted"] == 0 and s["disorder"] == 0
      and lo <= s["unknown"] <= hi)
sys.exit(0 if ok else 1)
PY
}
field() {
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
    "$@" 2>/dev/null
}
# converge_check NAME: stop live arrivals, wait until Kafka holds exactly
# the truth, report zero missing and zero duplicated, resume arrivals.
converge_check() {
  local name=$1
  check "$name: kafka and simulator still running" \
    bash -c "kill -0 $SIM_PID && kill -0 $(cat "$KAFKA_DIR/node-1/pid")"
  sim_control '{"target":"all","set":{"rate":0}}'
  wait_for "$name: convergence" $((90 * MULT)) truth_ok
  echo "  $name: $(head -c 400 "$T/check.json")"
  cp "$T/check.json" "$T/check.$name.json"
  check "$name: zero missing" test "$(field "$T/check.json" missing)" = 0
  check "$name: zero duplicated" \
    test "$(field "$T/check.json" duplicates)" = 0
  check "$name: nothing misrouted or out of order" \
    test "$(field "$T/check.json" misrouted)$(field "$T/check.json" \
      disorder)" = 00
  local u
  u=$(field "$T/check.json" unknown)
  check "$name: every webhook answered 200 published once ($WH_OK <= $u <= $WH_SENT)" \
    test "$u" -ge "$WH_OK" -a "$u" -le "$WH_SENT"
  RESULTS+=("$name: messages=$(field "$T/check.json" messages) missing=$(
    field "$T/check.json" missing) duplicated=$(field "$T/check.json" \
    duplicates)")
  sim_control "{\"target\":\"all\",\"set\":{\"rate\":$SIM_RATE}}"
}

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
check "a: later runs restored ids and checkpoints" \
  grep -Eq "restored [1-9][0-9]* ids and [1-9][0-9]* checkpoints" \
  "$T"/evbridge.*.kill*.log

start_eb main
MAIN_PID=$EB_PID MAIN_LOG=$EB_LOG
eb_url || bad "a: evbridge listening"
wait_for "restored after the kills" 30 is_ready "$MAIN_LOG" \
  || bad "a: evbridge ready after the kills"
converge_check "a-sigkill"

# ---- b. the broker killed and restarted; frozen past the txn timeout ----
# ensure_running: restart evbridge if an outage made it exit, and say why
# it exited (it must say something a person can act on).
ensure_running() {
  local name=$1 rc
  # A producer fenced by the coordinator's epoch bump (its transaction
  # outlived transaction.timeout.ms) says so some seconds after Kafka is
  # back, then drains: give it the time to decide.
  exited() { ! alive $MAIN_PID; }
  wait_for "$name: evbridge decides (rides it out or exits)" 20 exited ||
    true
  if alive $MAIN_PID; then
    RESULTS+=("$name: evbridge rode it out")
    return 0
  fi
  wait $MAIN_PID; rc=$?
  echo "  $name: evbridge exited with $rc:"
  tail -3 "$MAIN_LOG" | sed 's/^/    | /'
  check "$name: evbridge exited non-zero with an error line" \
    bash -c "[ $rc -ne 0 ] && grep -q ' E ' '$MAIN_LOG'"
  RESULTS+=("$name: evbridge exited ($rc), restarted")
  start_eb "after-$name"
  MAIN_PID=$EB_PID MAIN_LOG=$EB_LOG
  eb_url
  wait_for "$name: restarted evbridge ready" 60 is_ready "$MAIN_LOG" \
    || bad "$name: restarted evbridge ready"
}
webhook() { # webhook OUT: one signed Close webhook (a new event) to evbridge
  WH_SENT=$((WH_SENT + 1))
  $PY tests/tools/close_webhook.py --url "$EB_URL/webhooks/close-1" \
    --secret "$SECRET" --count 1 --timeout $((8 * MULT)) --tag "w$WH_SENT" \
    > "$1"
  if grep -q '"200"' "$1"; then WH_OK=$((WH_OK + 1)); fi
}
statuses() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["statuses"])' "$1"; }

sleep 2
check "b1: broker killed (kill -9)" kafka_ctl kill
sleep 3
webhook "$T/wh-down.json"
echo "  b1: webhook while the broker is dead: $(statuses "$T/wh-down.json")"
check "b1: a webhook while Kafka is dead is answered 503" \
  grep -q '"503"' "$T/wh-down.json"
sleep 3
check "b1: broker restarted" kafka_ctl restart 1
ensure_running b1
accepted() { webhook "$T/wh-up.json"; grep -q '"200"' "$T/wh-up.json"; }
check "b1: webhooks accepted once Kafka is back" \
  wait_for "b1: webhook accepted" 60 accepted
converge_check "b1-broker-killed"

check "b2: broker frozen" kafka_ctl pause
sleep $((TXN_TIMEOUT_MS / 1000 + 4))
webhook "$T/wh-frozen.json"
echo "  b2: webhook while the broker is frozen: $(statuses "$T/wh-frozen.json")"
check "b2: a webhook while Kafka is frozen is answered 503" \
  grep -q '"503"' "$T/wh-frozen.json"
check "b2: broker resumed after $((TXN_TIMEOUT_MS / 1000 + 4))s (> transaction.timeout.ms)" \
  kafka_ctl resume
sleep 5
ensure_running b2
check "b2: webhooks accepted once Kafka is back" \
  wait_for "b2: webhook accepted" 60 accepted
converge_check "b2-broker-frozen"

# ---- d. a zombie: A frozen, B takes over, A resumes ----------------------
A_PID=$MAIN_PID A_LOG=$MAIN_LOG
kill -STOP $A_PID
start_eb second
B_PID=$EB_PID B_LOG=$EB_LOG
wait_for "instance B restored" 60 is_ready "$B_LOG" \
  || bad "d: instance B ready"
t_resume=$(date +%s)
kill -CONT $A_PID
a_gone() { ! alive $A_PID; }
wait_for "instance A stops" 60 a_gone
if alive $A_PID; then
  bad "d: instance A stopped after being fenced"
  kill -KILL $A_PID
fi
wait $A_PID; rc=$?
echo "  d: instance A exited $(( $(date +%s) - t_resume )) s after it resumed:"
grep -m1 "fenced" "$A_LOG" | sed 's/^/    | /'
check "d: instance A exits 1 (fatal: fenced), not by a signal" \
  test "$rc" -eq 1
check "d: instance A says it was fenced" \
  grep -q "fenced: another evbridge with transactional.id=evbridge-faults" \
  "$A_LOG"
check "d: instance A logged no sanitizer report" \
  bash -c "! grep -q 'Sanitizer' '$A_LOG'"
sleep 3
check "d: instance B carries on" alive $B_PID
converge_check "d-fenced"
check "d: instance B was not fenced" bash -c "! grep -q 'fenced' '$B_LOG'"

# ---- the end: SIGTERM drains and exits 0 ---------------------------------
stop_pid $B_PID; rc=$?
check "instance B exits 0 on SIGTERM" test "$rc" -eq 0
check "instance B logged no sanitizer report" \
  bash -c "! grep -q 'Sanitizer' '$B_LOG'"
echo "results (seed $SEED, $(( $(date +%s) - t_start )) s):"
for r in "${RESULTS[@]}"; do echo "  $r"; done
finish
