#!/usr/bin/env bash
# Start-up while Kafka cannot be used (issue 19): the cause is logged
# within 5 s in the configured format, /healthz answers, /readyz says why,
# and evbridge keeps retrying until the cluster answers.
#
#   closed port     "Connection refused" naming host:port, JSON log lines,
#                   a second attempt, a clean stop on SIGTERM
#   no controller   a reachable cluster that cannot create the state topics
#                   (the standalone mock): said so, retried
#   reachable       the same mock with the state topics made beforehand:
#                   ready, and at-least-once starts its sources
#   restore refused the state topics cannot be read yet: said so, retried
#
# The mock is started here directly (not with lib_e2e.sh's start_kmock):
# these cases depend on what it has and lacks.
set -u
. "$(dirname "$0")/lib_e2e.sh"

# A port nothing listens on: bound, then closed.
closed_port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

write_config() { # write_config FILE BROKERS DELIVERY
  cat > "$1" <<EOF
{
  "kafka": { "brokers": "$2", "delivery": "$3",
             "transactional_id": "evb-startup-test" },
  "http": { "listen": "127.0.0.1:0" },
  "log": { "format": "json" },
  "sources": [
    { "name": "k1", "provider": "kommo", "base_url": "http://127.0.0.1:$closed_port",
      "credentials": { "token": "startup-token-secret" },
      "poll": { "interval": "1h" } }
  ]
}
EOF
}

start_evbridge() { # start_evbridge NAME CONFIG -> EVB_PID, HTTP_PORT
  (exec "$B/bin/evbridge" -c "$2" > "$T/$1.log" 2>&1) &
  EVB_PID=$!
  PIDS+=($EVB_PID)
  wait_for "$1 listening" 5 grep -q '"listening on' "$T/$1.log" || return 1
  HTTP_PORT=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$T/$1.log" | head -1)
}

readyz() { curl -s -m 2 "http://127.0.0.1:$HTTP_PORT/readyz"; }
code_of() { curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/$1"; }
all_json() { $PY -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$1"; }

# ---- closed port -----------------------------------------------------------
write_config "$T/closed.json" "127.0.0.1:$closed_port" exactly-once
start_evbridge closed "$T/closed.json"
t0=$(date +%s)
check "closed port: the cause is logged within 5 s" \
  wait_for "cause" 5 grep -q "\"module\":\"app\".*not ready.*127.0.0.1:$closed_port.*Connection refused" "$T/closed.log"
check "closed port: /healthz answers 200" test "$(code_of healthz)" = 200
check "closed port: /readyz answers 503" test "$(code_of readyz)" = 503
check "closed port: /readyz says why" \
  sh -c "curl -s -m 2 http://127.0.0.1:$HTTP_PORT/readyz | grep -q 'Connection refused'"
check "closed port: retried (attempt 2)" \
  wait_for "attempt 2" 10 grep -q 'not ready (attempt 2)' "$T/closed.log"
check "closed port: still running" kill -0 "$EVB_PID"
check "closed port: no CreateTopics blame" \
  sh -c "! grep -q CreateTopics '$T/closed.log'"
check "closed port: every line is JSON" all_json "$T/closed.log"
check "closed port: no secret in the log" \
  sh -c "! grep -q startup-token-secret '$T/closed.log'"
stop_pid "$EVB_PID"
check "closed port: SIGTERM while retrying exits 0" test $? -eq 0
echo "  (closed port: $(( $(date +%s) - t0 ))s)"

# ---- a mock cluster without the state topics (it has no controller) --------
(exec "$B/bin/evbridge-kafka-mock" --brokers 1 --port-file "$T/bs1" \
  > "$T/kmock1.out" 2>&1) &
PIDS+=($!)
wait_for "kafka mock" 10 test -s "$T/bs1"
write_config "$T/noctl.json" "$(cat "$T/bs1")" exactly-once
start_evbridge noctl "$T/noctl.json"
check "no controller: said so" \
  wait_for "no controller" 20 grep -q 'names no controller' "$T/noctl.log"
check "no controller: /readyz says so" \
  sh -c "curl -s -m 2 http://127.0.0.1:$HTTP_PORT/readyz | grep -q 'no controller'"
check "no controller: still running" kill -0 "$EVB_PID"
stop_pid "$EVB_PID"
check "no controller: SIGTERM exits 0" test $? -eq 0

# ---- a mock cluster with the state topics made beforehand -------------------
(exec "$B/bin/evbridge-kafka-mock" --brokers 1 --port-file "$T/bs2" \
  --topic evbridge.checkpoints:1 --topic evbridge.seen:1 \
  > "$T/kmock2.out" 2>&1) &
PIDS+=($!)
wait_for "kafka mock" 10 test -s "$T/bs2"
write_config "$T/ok.json" "$(cat "$T/bs2")" exactly-once
start_evbridge ok "$T/ok.json"
check "reachable: state restored" \
  wait_for "restored" 20 grep -q 'state restored: ready' "$T/ok.log"
check "reachable: /readyz answers 200" test "$(code_of readyz)" = 200
check "reachable: no not-ready line" sh -c "! grep -q 'not ready' '$T/ok.log'"
stop_pid "$EVB_PID"
check "reachable: SIGTERM exits 0" test $? -eq 0

# ---- the state topics cannot be read yet (READ not granted) ---------------
# The mock refuses ListOffsets, which only the restore sends, six times:
# the restore fails, says why, and is tried again until it works.
(exec "$B/bin/evbridge-kafka-mock" --brokers 1 --port-file "$T/bs3" \
  --control-port-file "$T/cport3" \
  --topic evbridge.checkpoints:1 --topic evbridge.seen:1 \
  > "$T/kmock3.out" 2>&1) &
PIDS+=($!)
wait_for "kafka mock" 10 test -s "$T/cport3"
exec 4<>"/dev/tcp/127.0.0.1/$(cat "$T/cport3")"
printf 'push-errors ListOffsets 29 29 29 29 29 29\n' >&4
IFS= read -r -t 10 answer <&4
check "the mock takes the errors ($answer)" test "${answer#ok}" != "$answer"
write_config "$T/restore.json" "$(cat "$T/bs3")" exactly-once
start_evbridge restore "$T/restore.json"
check "restore refused: the cause is logged" \
  wait_for "restore failure" 10 grep -q 'state restore failed (attempt 1): .*Topic authorization failed' "$T/restore.log"
check "restore refused: /readyz says why" \
  sh -c "curl -s -m 2 http://127.0.0.1:$HTTP_PORT/readyz | grep -q 'state not restored: .*Topic authorization failed'"
check "restore refused: retried, not fatal" \
  wait_for "restored" 40 grep -q 'state restored: ready' "$T/restore.log"
check "restore refused: then ready" test "$(code_of readyz)" = 200
stop_pid "$EVB_PID"
check "restore refused: SIGTERM exits 0" test $? -eq 0

write_config "$T/alo.json" "$(cat "$T/bs2")" at-least-once
start_evbridge alo "$T/alo.json"
check "at-least-once: sources start once the cluster answered" \
  wait_for "source started" 10 grep -q 'source=k1 provider=kommo' "$T/alo.log"
check "at-least-once: /readyz answers 200" test "$(code_of readyz)" = 200
stop_pid "$EVB_PID"
check "at-least-once: SIGTERM exits 0" test $? -eq 0

finish
