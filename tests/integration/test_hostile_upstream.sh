#!/usr/bin/env bash
# Hostile upstreams: seven sources point at a server that answers every
# poll with one kind of abuse (an endless body, a 40 MiB page, JSON nested
# 100,000 deep, invalid UTF-8, a 300 KB event id, one byte per second, a
# 1 GiB flood), while three healthy sources poll the simulator. evbridge
# must cap every body (http.max_body per source), count each failure
# (evbridge_source_errors_total{kind="body"|"http"}), back off on the
# hostile sources, keep its memory bounded (VmRSS within +100 MB), and
# publish every event of the healthy sources exactly once. The page with
# the 300 KB id parses: that one event is poison and goes, once, to the
# dead-letter topic, and its source keeps polling.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 17 --accounts kommo=1,close=1,kota=1 --backlog 150 \
  --backlog-span 1h --rate 2 --limits off \
  || { bad "sim start"; finish; exit 1; }
($PY tests/tools/hostile_upstream.py --huge-mb 40 --max-seconds 20 \
  > "$T/hostile.out" 2> "$T/hostile.err") &
PIDS+=($!)
wait_for "hostile upstream" 10 test -s "$T/hostile.out" \
  || { bad "hostile upstream start"; finish; exit 1; }
HPORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$T/hostile.out")
HOST="http://127.0.0.1:$HPORT"

$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 3s --listen 127.0.0.1:0 > "$T/cfg0.json"
# One hostile Close source per abuse; each names its body cap.
$PY - "$T/cfg0.json" "$HOST" > "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
host = sys.argv[2]
caps = {"endless": "2MiB", "huge": None, "deep": "1MiB", "utf8": "1MiB",
        "bigid": "1MiB", "slow": "1MiB", "flood": "4MiB"}
for mode, cap in caps.items():
    src = {"name": "h-" + mode, "provider": "close",
           "base_url": host + "/" + mode,
           "credentials": {"api_key": "hostile-key-" + mode},
           "poll": {"interval": "1s", "start": "1h"},
           "http": {"timeout": "3s", "connect_timeout": "1s"}}
    if cap:  # "huge" keeps the default cap, 16 MiB
        src["http"]["max_body"] = cap
    cfg["sources"].append(src)
json.dump(cfg, sys.stdout, indent=2)
PY
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

(exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
wait_for "evbridge listening" 15 test -s "$T/port" \
  || { bad "evbridge start"; cat "$T/evbridge.log"; finish; exit 1; }
EB="http://127.0.0.1:$(cat "$T/port")"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
base=$(rss_kb $EB_PID)
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
T0=$(date +%s)

# The healthy sources converge while the hostile ones keep failing.
sleep 8
sim_control '{"target":"all","set":{"rate":0}}'
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --allow-deadletter h-bigid --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "healthy sources: Kafka holds exactly the simulator's truth" \
  wait_for "convergence" 60 converged
cat "$T/check.json"; echo
# Give the slowest hostile retries (exponential backoff) time to come.
while [ $(( $(date +%s) - T0 )) -lt 20 ]; do sleep 1; done

curl -s "$EB/metrics" > "$T/metrics.txt"
curl -s "$HOST/_stats" > "$T/hostile_stats.json"
echo "hostile upstream requests: $(cat "$T/hostile_stats.json")"
value() { # value 'NAME{labels}' -> number (0 when absent)
  awk -v m="$1" '$1 == m {v = $2} END {print v + 0}' "$T/metrics.txt"
}
err() { value "evbridge_source_errors_total{source=\"h-$1\",provider=\"close\",kind=\"$2\"}"; }
for m in endless huge deep utf8 flood; do
  n=$(err "$m" body)
  check "h-$m: every answer counted as a body error ($n)" test "$n" -ge 2
done
n=$(err slow http)
check "h-slow: timeouts counted as http errors ($n)" test "$n" -ge 2
elapsed=$(( $(date +%s) - T0 ))
for m in endless huge deep utf8 slow flood; do
  reqs=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' \
    "$T/hostile_stats.json" "$m")
  # Polled every second when healthy; with backoff (1 s, doubling, with
  # jitter) far fewer in the same time.
  check "h-$m: backed off ($reqs requests in ${elapsed}s)" \
    test "$reqs" -ge 2 -a "$reqs" -le 10
  pub=$(value "evbridge_source_events_published_total{source=\"h-$m\",provider=\"close\"}")
  check "h-$m: nothing published ($pub)" test "$pub" -eq 0
done
for m in endless huge deep utf8 slow flood; do
  bo=$(value "evbridge_source_backoff_seconds{source=\"h-$m\",provider=\"close\"}")
  check "h-$m: in backoff now (${bo}s)" $PY -c "import sys; sys.exit(0 if $bo > 0 else 1)"
done
dl=$(value "evbridge_source_deadletter_total{source=\"h-bigid\",provider=\"close\"}")
check "h-bigid: the poison event went to the dead-letter topic once ($dl)" \
  test "$dl" -eq 1
n=$(err bigid body)
check "h-bigid: not a body error ($n)" test "$n" -eq 0
bo=$(value "evbridge_source_backoff_seconds{source=\"h-bigid\",provider=\"close\"}")
check "h-bigid: not in backoff: it keeps polling (${bo}s)" \
  $PY -c "import sys; sys.exit(0 if $bo == 0 else 1)"
peak=$(cat "$T/rss.max")
echo "VmRSS before: ${base} kB, peak: ${peak} kB"
check "memory stayed bounded: peak VmRSS +$(( (peak - base) / 1024 )) MB <= +100 MB" \
  test $((peak - base)) -le $((100 * 1024))
check "no hostile body reached the log" \
  bash -c "! grep -qE 'xxxxxxxxxx|\[\[\[\[\[\[\[\[' '$T/evbridge.log'"

kill $SAMPLER 2>/dev/null
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
stop_pid $SIM_PID; rc=$?
check "simulator exits 0" test "$rc" -eq 0
check "final check: exactly the truth" \
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
  --allow-deadletter h-bigid --quiet
finish
