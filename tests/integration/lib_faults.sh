# Helpers of the fault-injection suite (tests/integration/test_faults.sh),
# sourced after lib_e2e.sh: a standalone evbridge-kafka-mock with its
# control port, evbridge instances as separate processes, and the check
# of Kafka against the simulator's ground truth.

start_kmock_ctl() { # start_kmock_ctl BROKERS -> sets BS, CTL_PORT, KMOCK_PID
  (exec "$B/bin/evbridge-kafka-mock" --brokers "$1" --port-file "$T/bs" \
    --control-port-file "$T/ctl" \
    --topic evbridge.checkpoints:1 --topic evbridge.seen:1 \
    > "$T/kmock.out" 2> "$T/kmock.err") &
  KMOCK_PID=$!
  PIDS+=($KMOCK_PID)
  wait_for "kafka mock" 10 test -s "$T/ctl" || return 1
  BS=$(cat "$T/bs")
  CTL_PORT=$(cat "$T/ctl")
}

# kctl COMMAND...: one command on the mock's control port; prints the
# answer and succeeds when it starts with "ok".
kctl() {
  local fd line=""
  exec {fd}<>"/dev/tcp/127.0.0.1/$CTL_PORT" || return 1
  printf '%s\n' "$*" >&"$fd"
  IFS= read -r -t 10 line <&"$fd"
  exec {fd}>&-
  echo "  kafka-mock: $* -> $line"
  [[ $line == ok* ]]
}

# kctl_count BROKER API: errors pushed on BROKER for API not consumed yet.
kctl_count() {
  local fd line=""
  exec {fd}<>"/dev/tcp/127.0.0.1/$CTL_PORT" || return 1
  printf 'error-count %s %s\n' "$1" "$2" >&"$fd"
  IFS= read -r -t 10 line <&"$fd"
  exec {fd}>&-
  [[ $line == ok* ]] || return 1
  echo "${line#ok }"
}
errors_consumed() { [ "$(kctl_count "$1" "$2")" = 0 ]; }

# Leader of partition 0 of a topic (kcat metadata).
leader_of() {
  timeout $((20 * MULT)) kcat -b "$BS" -L -t "$1" 2>/dev/null |
    sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p' | head -1
}

EB_RUN=0
# start_eb NAME [CONFIG]: an evbridge process -> EB_PID, EB_LOG
start_eb() {
  EB_RUN=$((EB_RUN + 1))
  EB_LOG="$T/evbridge.$EB_RUN.$1.log"
  (exec "$B/bin/evbridge" --config "${2:-$T/cfg.json}" > "$EB_LOG" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
}
is_ready() { grep -q "state restored: ready" "$1"; }
alive() { kill -0 "$1" 2>/dev/null; }

# The simulator's truth against Kafka, counting only committed
# transactions (the 2.0.2 mock ignores read_committed: see
# docs/delivery.md); writes $T/check.json.
truth_ok() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null \
    || return 1
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --committed-only evbridge --quiet --timeout 20 > "$T/check.json" 2>&1
}
field() {
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
    "$@" 2>/dev/null
}

# converge_check NAME: stop live arrivals, wait until Kafka holds exactly
# the truth, report zero missing and zero duplicated, resume arrivals.
converge_check() {
  local name=$1
  check "$name: kafka mock and simulator still running" \
    bash -c "kill -0 $KMOCK_PID && kill -0 $SIM_PID"
  sim_control '{"target":"all","set":{"rate":0}}'
  wait_for "$name: convergence" $((90 * MULT)) truth_ok
  echo "  $name: $(cat "$T/check.json" | head -c 400)"
  cp "$T/check.json" "$T/check.$name.json"
  check "$name: zero missing" \
    test "$(field "$T/check.json" missing)" = 0
  check "$name: zero duplicated" \
    test "$(field "$T/check.json" duplicates)" = 0
  check "$name: nothing unknown, misrouted or out of order" \
    test "$(field "$T/check.json" unknown)$(field "$T/check.json" \
      misrouted)$(field "$T/check.json" disorder)" = 000
  RESULTS+=("$name: messages=$(field "$T/check.json" messages) missing=$(
    field "$T/check.json" missing) duplicated=$(field "$T/check.json" \
    duplicates) aborted_skipped=$(field "$T/check.json" aborted_skipped)")
  sim_control "{\"target\":\"all\",\"set\":{\"rate\":$SIM_RATE}}"
}
