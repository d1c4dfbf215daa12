#!/usr/bin/env bash
# The process lifecycle: evbridge on its embedded default starts, prints a
# bootstrap address a real client can use, ignores SIGPIPE, and on SIGTERM
# or SIGINT drains and exits 0; a second signal cuts the drain short.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

# The embedded default, except that the listener takes an ephemeral
# loopback port instead of 0.0.0.0:8080.
echo '{"http":{"listen":"127.0.0.1:0"}}' > "$T/default.json"
start_default() { # -> EB_PID, waits for the bootstrap file
  rm -f "$T/bs.$1"
  (exec "$B/bin/evbridge" --config "$T/default.json" \
    --bootstrap-file "$T/bs.$1" > "$T/eb.$1.log" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
  wait_for "evbridge $1 start" 20 test -s "$T/bs.$1"
}

for sig in TERM INT; do
  start_default "$sig" || { bad "start ($sig)"; continue; }
  bs=$(cat "$T/bs.$sig")
  check "embedded cluster answers kcat -L ($sig run)" \
    kcat -b "$bs" -L -m 5
  check "loud warning that nothing is durable" \
    grep -q "NOTHING IS DURABLE" "$T/eb.$sig.log"
  kill -PIPE "$EB_PID"
  sleep 0.3
  check "SIGPIPE is ignored" kill -0 "$EB_PID"
  kill -"$sig" "$EB_PID"
  wait "$EB_PID"; rc=$?
  check "SIG$sig: drained, exit 0 (got $rc)" test "$rc" -eq 0
  check "SIG$sig: says why it stops" grep -q "shutting down: SIG$sig" "$T/eb.$sig.log"
done

# Two signals: the second one ends the drain at once, still exit 0.
start_default twice || bad "start (twice)"
kill -TERM "$EB_PID"; kill -TERM "$EB_PID"
wait "$EB_PID"; rc=$?
check "second SIGTERM: exit 0 (got $rc)" test "$rc" -eq 0

# A broken config never starts the loop: exit 2 with the key named.
echo '{"kafka":{"delivery":"maybe"}}' > "$T/bad.json"
out=$("$B/bin/evbridge" --config "$T/bad.json" 2>&1); rc=$?
check "broken config: exit 2 (got $rc)" test "$rc" -eq 2
check "broken config: names kafka.delivery" grep -q "kafka.delivery" <<< "$out"
finish
