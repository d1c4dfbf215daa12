#!/usr/bin/env bash
# Hostile HTTP clients against the webhook listener of a running evbridge
# (a Close source with a webhook block, the simulator upstream, the Kafka
# mock), all at once:
#
#   slowloris   headers dribbled one byte per 500 ms from 200 connections
#   slowbody    200 bodies that never finish (Content-Length larger than
#               what is sent)
#   idle        up to 2000 connections that send nothing
#   bigheaders  header blocks of 64 KiB (over http.max_headers)
#   pipeline    8 connections writing requests back to back without ever
#               reading an answer
#
# Meanwhile valid signed Close webhooks must keep getting 200 within a few
# seconds, evbridge's memory (VmRSS) must stay within +100 MB, and every
# hostile connection must be closed by http.timeout (2 s here): slow and
# idle ones by the listener, the others after their answer.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

TIMEOUT_S=2
# Connections for the idle attack: 2000, or what the fd limit allows.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fdmax=$(ulimit -n)
IDLE=2000
if [ "$fdmax" != unlimited ] && [ "$fdmax" -lt $((IDLE + 600)) ]; then
  IDLE=$((fdmax - 600))
fi
# ASan keeps freed memory in quarantine (256 MB by default), which would
# count as growth here; a small one still catches use-after-free.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 3 --accounts close=1 --backlog 20 --rate 0 --limits off \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 2s --webhooks --listen 127.0.0.1:0 > "$T/cfg0.json"
$PY - "$T/cfg0.json" "$TIMEOUT_S" > "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["http"]["timeout"] = sys.argv[2] + "s"
json.dump(cfg, sys.stdout, indent=2)
PY
(exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
wait_for "evbridge listening" 15 test -s "$T/port" \
  || { bad "evbridge start"; cat "$T/evbridge.log"; finish; exit 1; }
PORT=$(cat "$T/port")
EB="http://127.0.0.1:$PORT"
ready() { curl -s -f -o /dev/null "$EB/readyz"; }
wait_for "evbridge ready" 30 ready
SECRET=$(head -1 "$T/sim.out" | $PY -c '
import json, sys
print(json.load(sys.stdin)["accounts"][0]["webhook"]["secret"])')

metric() { # metric NAME -> value (0 if absent)
  curl -s -m 5 "$EB/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
legit() { # legit OUT COUNT: signed Close webhooks, one per second
  $PY tests/tools/close_webhook.py --url "$EB/webhooks/close-1" \
    --secret "$SECRET" --count "$2" --interval 1 --timeout $((5 * MULT)) > "$1"
}
all_200() { # all_200 FILE: every delivery answered 200
  $PY - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if r["sent"] and r["statuses"] == {"200": r["sent"]} else 1)
PY
}
field() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# The backlog's first transaction creates the event topics (auto-created
# on a real broker, which takes a moment): the baseline starts after it.
backlog_in() {
  [ "$(metric 'evbridge_source_events_published_total{source="close-1",provider="close"}')" -ge 20 ]
}
wait_for "backlog published" 30 backlog_in
legit "$T/legit0.json" 2
check "before the attack: signed webhooks answered 200 ($(cat "$T/legit0.json"))" \
  all_200 "$T/legit0.json"
sleep 1
base=$(rss_kb $EB_PID)
echo "VmRSS before: ${base} kB; idle connections: $IDLE"

# RSS sampler: keeps the highest value seen.
echo "$base" > "$T/rss.max"
(
  max=$base
  while kill -0 $EB_PID 2>/dev/null; do
    r=$(rss_kb $EB_PID)
    if [ "${r:-0}" -gt "$max" ]; then max=$r; echo "$max" > "$T/rss.max"; fi
    sleep 0.2
  done
) &
SAMPLER=$!
PIDS+=($SAMPLER)

HC="$PY tests/tools/hostile_client.py"
DUR=$((10 * MULT))
$HC slowloris --port "$PORT" --conns 200 --interval 0.5 --duration "$DUR" \
  --path /webhooks/close-1 > "$T/slowloris.json" &
A1=$!
$HC slowbody --port "$PORT" --conns 200 --duration "$DUR" \
  --path /webhooks/close-1 > "$T/slowbody.json" &
A2=$!
$HC idle --port "$PORT" --conns "$IDLE" --duration "$DUR" > "$T/idle.json" &
A3=$!
$HC bigheaders --port "$PORT" --conns 20 --header-bytes 65536 \
  --path /webhooks/close-1 > "$T/bigheaders.json" &
A4=$!
# Twice as long: on a loaded machine evbridge's close of these may come
# late in the window, and it must come while the client still writes.
$HC pipeline --port "$PORT" --conns 8 --duration $((2 * DUR)) \
  --ports-file "$T/pipeline.ports" > "$T/pipeline.json" &
A5=$!
PIDS+=($A1 $A2 $A3 $A4 $A5)
# The pipelining client may never notice that evbridge closed its
# connections (the peer socket is gone, the unread answers still queued in
# the kernel on both sides), so watch evbridge's side of its sockets: the
# moment none of them is established any more, while it still writes.
(
  command -v ss >/dev/null || exit 0 # then only the client's view counts
  wait_for "pipeline ports" 5 test -s "$T/pipeline.ports" >/dev/null || exit 0
  while kill -0 $A5 2>/dev/null; do
    n=0
    for p in $(cat "$T/pipeline.ports"); do
      if ss -Htn state established "( sport = :$PORT and dport = :$p )" \
           2>/dev/null | grep -q .; then n=$((n + 1)); fi
    done
    if [ "$n" -eq 0 ]; then echo "$SECONDS" > "$T/pipeline.server_closed"; exit 0; fi
    sleep 0.5
  done
) &
PIDS+=($!)
sleep 1
during_conns=$(metric evbridge_http_connections)
legit "$T/legit1.json" 5
check "during the attack: signed webhooks answered 200 ($(cat "$T/legit1.json"))" \
  all_200 "$T/legit1.json"
slowest=$(field "$T/legit1.json" max_s)
check "during the attack: the slowest answer took under 5 s ($slowest s)" \
  $PY -c "import sys; sys.exit(0 if $slowest < 5 * $MULT else 1)"
echo "connections open during the attack: $during_conns"
check "the attack really held connections open ($during_conns)" \
  test "$during_conns" -ge 100
wait $A1 $A2 $A3 $A4 $A5

for a in slowloris slowbody idle bigheaders pipeline; do
  echo "$a: $(cat "$T/$a.json")"
done
# Closed by the listener within http.timeout (plus scheduling slack).
closed_in_time() { # closed_in_time FILE: every connection closed, in time
  $PY - "$1" "$TIMEOUT_S" "$MULT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
limit = float(sys.argv[2]) + 2.5 * float(sys.argv[3])
sys.exit(0 if r["closed"] == r["conns"] and r["max_closed_s"] is not None
         and r["max_closed_s"] <= limit else 1)
PY
}
check "slowloris: every connection closed by the request deadline" \
  closed_in_time "$T/slowloris.json"
check "slowloris: none got to send its header block (<50 bytes each)" \
  test "$(field "$T/slowloris.json" max_bytes_sent)" -lt 50
check "unfinished bodies: every connection closed by http.timeout" \
  closed_in_time "$T/slowbody.json"
check "idle: all $IDLE connections closed by http.timeout" \
  closed_in_time "$T/idle.json"
check "oversized headers: refused with 4xx and closed" $PY - "$T/bigheaders.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["closed"] == r["conns"] and all(s.startswith("4") for s in r["statuses"])
sys.exit(0 if ok else 1)
PY
check "pipelining without reading: the attack ran ($(field "$T/pipeline.json" requests_sent) requests written)" \
  test "$(field "$T/pipeline.json" requests_sent)" -gt 10000
pipe_closed() {
  [ -s "$T/pipeline.server_closed" ] || \
    [ "$(field "$T/pipeline.json" closed)" = 8 ]
}
check "pipelining without reading: evbridge closed every such connection while the client still wrote" \
  pipe_closed

peak=$(cat "$T/rss.max")
echo "VmRSS peak during the attack: ${peak} kB (before: ${base} kB)"
check "memory stayed bounded: peak VmRSS +$(( (peak - base) / 1024 )) MB <= +100 MB" \
  test $((peak - base)) -le $((100 * 1024))

# Afterwards: every hostile connection is gone (the scrape is the one left).
conns_gone() { [ "$(metric evbridge_http_connections)" -le 1 ]; }
check "every connection closed after the attack" \
  wait_for "connections closed" $((TIMEOUT_S + 5)) conns_gone
timeouts=$(metric evbridge_http_request_timeouts_total)
check "request deadlines fired and were counted ($timeouts)" \
  test "$timeouts" -ge 200
c400=$(metric 'evbridge_http_responses_total{code="400"}')
check "oversized header blocks were answered 400 and counted ($c400)" \
  test "$c400" -ge 20
after=$(rss_kb $EB_PID)
echo "VmRSS after: ${after} kB"
legit "$T/legit2.json" 2
check "after the attack: signed webhooks answered 200" all_200 "$T/legit2.json"

kill $SAMPLER 2>/dev/null
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
check "evbridge logged no crash or sanitizer report" \
  bash -c "! grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' '$T/evbridge.log'"
finish
