#!/usr/bin/env bash
# Several replicas started with one config and no scale section (a
# Deployment scaled up by mistake), on a real broker. Without a guard they
# would fence each other in turn, for ever; with it (lib/eb_instance.h):
#
#   1. A runs; B starts with the same config (another pod name): B says
#      what is wrong and what to set, waits as a standby (/readyz 503),
#      and A is never fenced;
#   2. A is killed (SIGKILL): B takes over by itself once A's membership
#      has expired;
#   3. A comes back: now A is the standby;
#   4. two replicas started at the same moment: at most one is fenced
#      (exit 1), and once restarted it waits as a standby; no fencing
#      war;
# and through all of it Kafka, read with read_committed, holds every
# event exactly once.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka --own || { bad "kafka start"; finish; exit 1; }
start_sim --seed 17 --accounts kommo=1,close=1,kota=1 \
  --backlog 200 --backlog-span 2h --rate 4 --consolidate close=0.3 \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --listen 127.0.0.1:0 > "$T/cfg.json"

declare -A PID PORT LOG
run=0
launch() { # launch NAME: pod NAME, its own listener, not waited for
  run=$((run + 1))
  LOG[$1]="$T/evbridge.$1.$run.log"
  rm -f "$T/port.$1"
  (EVBRIDGE_INSTANCE="pod-$1" exec "$B/bin/evbridge" --config "$T/cfg.json" \
    --port-file "$T/port.$1" > "${LOG[$1]}" 2>&1) &
  PID[$1]=$!
  PIDS+=(${PID[$1]})
}
listening() { # listening NAME
  wait_for "replica $1 listening" 15 test -s "$T/port.$1" || return 1
  PORT[$1]=$(cat "$T/port.$1")
}
start_replica() { launch "$1"; listening "$1"; }
is_ready() { curl -s -f -o /dev/null "http://127.0.0.1:${PORT[$1]}/readyz"; }
standby() { grep -q "already runs with transactional.id=evbridge-main" "${LOG[$1]}"; }
alive() { kill -0 "${PID[$1]}" 2>/dev/null; }
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
  sim_control '{"target":"all","set":{"rate":4}}'
}

# ---- 1. A runs, B waits ---------------------------------------------------
start_replica a || { bad "start a"; finish; exit 1; }
check "1: A ready" wait_for "A ready" 60 is_ready a
start_replica b || bad "start b"
check "1: B says another instance runs and what to set" \
  wait_for "B standby" 30 standby b
grep -m1 "already runs" "${LOG[b]}" | cut -c1-400 | sed 's/^/    | /'
check "1: the message names A's pod and scale.shards" \
  grep -q "instance pod-a .*scale.shards" "${LOG[b]}"
curl -s "http://127.0.0.1:${PORT[b]}/readyz" > "$T/readyz.b"
check "1: B is not ready, and says it is a standby ($(head -c 120 "$T/readyz.b"))" \
  bash -c "! curl -s -f -o /dev/null http://127.0.0.1:${PORT[b]}/readyz && grep -q standby '$T/readyz.b'"
sleep 8
check "1: A still runs" alive a
check "1: A was never fenced" bash -c "! grep -q fenced '${LOG[a]}'"
converge "1-standby"

# ---- 2. A dies, B takes over ---------------------------------------------
kill -KILL "${PID[a]}"; wait "${PID[a]}" 2>/dev/null
t0=$(date +%s)
check "2: B takes over once A is gone" wait_for "B ready" 60 is_ready b
echo "  2: B ready $(( $(date +%s) - t0 )) s after A's SIGKILL"
check "2: B said it took over" grep -q "the other instance is gone" "${LOG[b]}"
converge "2-takeover"

# ---- 3. A comes back as the standby --------------------------------------
start_replica a || bad "restart a"
check "3: A, back, waits as the standby" wait_for "A standby" 30 standby a
sleep 4
check "3: B was never fenced" bash -c "! grep -q fenced '${LOG[b]}'"
stop_pid "${PID[a]}"; rc=$?
check "3: the standby exits 0 on SIGTERM" test "$rc" -eq 0
stop_pid "${PID[b]}"; rc=$?
check "3: B exits 0 on SIGTERM" test "$rc" -eq 0

# ---- 4. two at the same moment -------------------------------------------
# Both may find the group empty and start; the broker then fences one.
# That one, restarted (as Kubernetes would), must find the other and wait.
sleep 11 # B's membership expires (session.timeout.ms 10 s)
launch c
launch d
listening c || bad "4: c listening"
listening d || bad "4: d listening"
sleep 15
fenced=0 restarted=
for r in c d; do
  if ! kill -0 "${PID[$r]}" 2>/dev/null; then
    fenced=$((fenced + 1)); restarted=$r
  fi
done
echo "  4: replicas that exited after the simultaneous start: $fenced"
check "4: at most one of the two stopped" test "$fenced" -le 1
if [ -n "$restarted" ]; then
  check "4: the one that stopped said it was fenced, and what to set" \
    grep -q "fenced: .*scale.shards" "${LOG[$restarted]}"
  start_replica "$restarted"
  check "4: restarted, it waits as the standby (no fencing war)" \
    wait_for "$restarted standby" 30 standby "$restarted"
fi
both_up() { kill -0 "${PID[c]}" 2>/dev/null && kill -0 "${PID[d]}" 2>/dev/null; }
sleep 10
check "4: both still up 10 s later (one active, one standby)" both_up
converge "4-simultaneous"
finish
