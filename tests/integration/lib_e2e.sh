# Shared helpers for end-to-end shell tests (sourced, not run).
# Starts processes in a temp dir, cleans them all up on exit, and keeps a
# pass/fail tally that ends with the "N passed, N failed" line.
B="${EB_BUILD_DIR:-$PWD/build/release}"
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/evbridge-e2e.XXXXXX")
PIDS=()
pass=0
fail=0
MULT=${EB_TEST_TMOUT_MULT:-1}

# Only processes that are still children of this script: pids are reused
# (pid_max is often 32768), and a pid of ours that already ended may by
# now belong to someone else's process.
ours() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do ours "$p" && kill -TERM "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
  if [ -n "$KAFKA_DIR" ]; then tests/kafka/broker stop "$KAFKA_DIR"; fi
  if [ "$fail" -eq 0 ] && [ -z "${EB_KEEP_TMP:-}" ]; then rm -rf "$T"; else
    echo "artifacts kept in $T"; fi
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check "name" cmd...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}

# wait_for "description" seconds command...: poll until the command succeeds
wait_for() {
  local what=$1 secs=$2; shift 2; local t0=$(date +%s)
  local end=$(( $(date +%s) + secs * MULT ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then echo "  ($what: $(( $(date +%s) - t0 ))s)"; return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for: $what"
  return 1
}

# start_kafka [--own] [--nodes N] [broker options] -> sets BS, KAFKA_DIR
# A real Apache Kafka broker (tests/kafka/broker) of this test's own, or
# the cluster EB_TEST_BROKERS names (one node, no options asked). --own:
# always a broker of its own (the test kills or freezes it).
KAFKA_DIR=
start_kafka() {
  local own=0
  if [ "${1:-}" = --own ]; then own=1; shift; fi
  if [ -n "${EB_TEST_BROKERS:-}" ] && [ $# -eq 0 ] && [ $own = 0 ]; then
    BS=$EB_TEST_BROKERS
    # Names of this test's own on the shared cluster (sim_config.py and
    # truth_check.py add it to the topic and state prefixes).
    EB_TEST_NS=$(basename "$T" | tr -c 'a-zA-Z0-9\n' '-' | tr 'A-Z' 'a-z')
    export EB_TEST_NS
    echo "  kafka: existing cluster at $BS (names suffixed -$EB_TEST_NS)"
    return 0
  fi
  KAFKA_DIR="$T/kafka"
  if ! BS=$(tests/kafka/broker start "$KAFKA_DIR" "$@" 2> "$T/kafka.err"); then
    cat "$T/kafka.err"
    return 1
  fi
  echo "  kafka: $(tests/kafka/broker version) at $BS"
}
kafka_ctl() { # kafka_ctl VERB [NODE]: kill, restart, pause, resume
  tests/kafka/broker "$1" "$KAFKA_DIR" ${2:+"$2"}
}

# start_kmock BROKERS -> sets BS: librdkafka's mock cluster, only for
# tests that inject error codes a real broker cannot be made to return.
start_kmock() {
  # The state topics of exactly-once delivery (state_prefix "evbridge"):
  # the mock has no controller, so evbridge cannot create them itself.
  (exec "$B/bin/evbridge-kafka-mock" --brokers "${1:-1}" --port-file "$T/bs" \
    --topic evbridge.checkpoints:1 --topic evbridge.seen:1 \
    > "$T/kmock.out" 2>&1) &
  PIDS+=($!)
  KMOCK_PID=$!
  wait_for "kafka mock" 10 test -s "$T/bs" || return 1
  BS=$(cat "$T/bs")
}

start_sim() { # start_sim ARGS... -> sets SIM_PID, SIM_CTL
  (exec "$B/bin/evbridge-sim" --dump "$T/truth.jsonl" "$@" > "$T/sim.out" \
    2> "$T/sim.err") &
  SIM_PID=$!
  PIDS+=($SIM_PID)
  wait_for "simulator" 10 test -s "$T/sim.out" || return 1
  SIM_CTL=$(head -1 "$T/sim.out" | $PY -c \
    'import json,sys; print(json.load(sys.stdin)["control_url"])')
  SIM_ORIGIN=${SIM_CTL%/_sim/control}
}

sim_control() { curl -s -f -X POST -d "$1" "$SIM_CTL" > /dev/null; }

stop_pid() { # stop_pid PID -> returns its exit status
  kill -TERM "$1" 2>/dev/null
  wait "$1"
}
