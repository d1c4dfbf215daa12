#!/usr/bin/env bash
# A cluster that refuses evbridge's messages (a missing topic ACL): the
# refusal, with its topic and error, is in /status and `evbridge status`,
# not only in a rate-limited log line; the source shows its failed
# publish. The standalone mock refuses Produce on command.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

(exec "$B/bin/evbridge-kafka-mock" --brokers 1 --port-file "$T/bs" \
  --control-port-file "$T/cport" > "$T/kmock.out" 2>&1) &
PIDS+=($!)
wait_for "kafka mock" 10 test -s "$T/cport" || { bad "mock start"; finish; exit 1; }
exec 3<>"/dev/tcp/127.0.0.1/$(cat "$T/cport")"
ctl() { local l=""; printf '%s\n' "$1" >&3 && IFS= read -r -t 10 l <&3; echo "$l"; }
# 29 is TOPIC_AUTHORIZATION_FAILED (by number: the line stays short).
answer=$(ctl "push-errors Produce $(printf '29 %.0s' $(seq 60))")
check "the mock takes the errors ($answer)" test "${answer#ok}" != "$answer"

start_sim --seed 23 --accounts kommo=0,close=1,kota=0 --backlog 40 --rate 0 \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$(cat "$T/bs")" \
  --delivery at-least-once --interval 1s --listen 127.0.0.1:0 > "$T/cfg.json"
(exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
wait_for "port file" 10 test -s "$T/port"
URL="http://127.0.0.1:$(cat "$T/port")"

refused() { curl -s "$URL/status" | grep -q '"kafka_last_failure": "topic crm\..*TOPIC_AUTHORIZATION_FAILED'; }
check "/status names the refused topic and the error" \
  wait_for "refusal in /status" 30 refused
check "/status has the refusal's time" \
  sh -c "curl -s '$URL/status' | grep -q '\"kafka_last_failure_time\": \"20'"
check "the source shows its failed publish" \
  sh -c "curl -s '$URL/status' | grep -q '\"last_error\": \"publish failed'"
check "nothing refused counts as published (no newest event time)" \
  sh -c "curl -s '$URL/status' | grep -q '\"newest_event_time\": null'"
"$B/bin/evbridge" status "$URL" > "$T/status.txt" 2>&1
cat "$T/status.txt"
check "evbridge status prints the last refusal" \
  grep -q '^last Kafka refusal: topic crm\..*Topic authorization failed (TOPIC_AUTHORIZATION_FAILED) (.* ago)' "$T/status.txt"
stop_pid "$EB_PID"
check "evbridge exits 0" test $? -eq 0
finish
