#!/usr/bin/env bash
# Backfills in bounded memory (docs/operations.md, "Memory"): evbridge
# (exactly-once) backfills a history of N events per provider (Kommo, Close
# and Kota at once, one account each) from the simulator, then:
#   - every version arrives exactly once (truth_check.py),
#   - the checkpoints advance during the backfill: /metrics shows committed
#     checkpoints before the last event is published,
#   - the peak RSS of evbridge (VmHWM) stays under EB_BACKFILL_RSS_MB.
#
# EB_BACKFILL_EVENTS (default 20000 per provider) sets the size; the
# 200,000-per-provider run is `make test-backfill` (too slow for the
# regular suite on two cores). EB_BACKFILL_PROVIDERS narrows the set
# (e.g. "close"), EB_BACKFILL_NO_CHECK=1 skips truth_check (measurement
# runs). Sanitizer builds (build/asan, build/ubsan) report the peak RSS
# without judging it: shadow memory is not evbridge's.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

N=${EB_BACKFILL_EVENTS:-20000}
PROVS=${EB_BACKFILL_PROVIDERS:-kommo,close,kota}
RSS_MB=${EB_BACKFILL_RSS_MB:-128}
# EB_BACKFILL_OVERLAY=dev: the settings and memory limit of
# deploy/k8s/overlays/dev (test_backfill_dev_limit.sh).
OVERLAY=${EB_BACKFILL_OVERLAY:-}
if [ -n "$OVERLAY" ]; then
  OJSON=deploy/k8s/overlays/$OVERLAY/evbridge.json
  lim=$(awk '/limits:/ {l = 1} l && /memory:/ {print $2; exit}' \
    "deploy/k8s/overlays/$OVERLAY/deployment-resources.yaml")
  case "$lim" in
    *Gi) lim_mb=$(( ${lim%Gi} * 1024 * 1048576 / 1000000 )) ;;
    *Mi) lim_mb=$(( ${lim%Mi} * 1048576 / 1000000 )) ;;
    *) echo "cannot read the memory limit of $OVERLAY ($lim)"; exit 1 ;;
  esac
  echo "  overlay $OVERLAY: memory limit $lim ($lim_mb MB)"
  [ "$lim_mb" -lt "$RSS_MB" ] && RSS_MB=$lim_mb
fi
accts=$(echo "$PROVS" | sed 's/\([a-z]*\)/\1=1/g')
backlog=$(echo "$PROVS" | sed "s/\([a-z]*\)/--backlog \1=$N/g; s/,/ /g")

start_kafka || { bad "kafka start"; finish; exit 1; }
# A big backlog takes the simulator a while to generate.
mult0=$MULT
MULT=$(( MULT * (1 + N / 20000) ))
# shellcheck disable=SC2086
start_sim --seed 21 --accounts "$accts" --rate 0 --limits off \
  $backlog --backlog-span 6d \
  || { bad "sim start"; finish; exit 1; }
MULT=$mult0
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 5s --start 7d --listen 127.0.0.1:0 \
  --rps 200 > "$T/cfg.json"
if [ -n "$OVERLAY" ]; then
  # The overlay's memory settings (dedupe, batches, walk bounds, log
  # level) on the simulator's sources; its memory limit bounds the RSS.
  $PY - "$T/cfg.json" "$OJSON" > "$T/cfg-o.json" <<'PY'
import json, sys
cfg, o = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("dedupe", "log"):
    if k in o:
        cfg[k] = o[k]
for k in ("batch", "queue_max_messages"):
    if k in o.get("kafka", {}):
        cfg["kafka"][k] = o["kafka"][k]
cfg["log"]["level"] = "info"
for s in cfg["sources"]:
    for os_ in o["sources"]:
        if os_["provider"] == s["provider"]:
            for k in ("max_buffered_events", "page_size"):
                if k in os_.get("poll", {}):
                    s["poll"][k] = os_["poll"][k]
json.dump(cfg, sys.stdout, indent=2)
PY
  mv "$T/cfg-o.json" "$T/cfg.json"
fi
(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
port_of() { grep -o 'listening on .* (port [0-9]*)' "$T/evbridge.log" |
  head -1 | sed 's/.*port \([0-9]*\))/\1/'; }
has_port() { [ -n "$(port_of)" ]; }
wait_for "evbridge listening" 30 has_port \
  || { bad "evbridge start"; cat "$T/evbridge.log"; finish; exit 1; }
M="http://127.0.0.1:$(port_of)/metrics"

# The versions to expect: the backlog's current ones (consolidation
# folded some updates into later versions of the same event).
sim_control '{"target":"all","dump":true}'
total=$(grep -vc '"superseded":true' "$T/truth.jsonl")
nsrc=$(echo "$PROVS" | tr ',' '\n' | wc -l)
metrics() { curl -s -f "$M" > "$T/metrics.txt"; }
metric_sum() { awk -v n="$1" '$1 ~ "^"n"[{ ]" {s+=$NF} END {printf "%d\n", s}' \
  "$T/metrics.txt"; }
# sources whose checkpoint moved at least once
moved() { awk '$1 ~ /^evbridge_source_checkpoints_committed_total[{]/ &&
  $NF > 0 {n++} END {print n + 0}' "$T/metrics.txt"; }
early_cp=0 published=0 hwm=0 cps0=
t0=$(date +%s)
end=$(( t0 + (60 + N / 100) * MULT ))
while [ "$(date +%s)" -lt "$end" ]; do
  metrics
  published=$(metric_sum evbridge_source_events_published_total)
  cps=$(metric_sum evbridge_source_checkpoints_committed_total)
  if [ "$published" -ge $(( total / 10 )) ] && [ "$published" -lt "$total" ]
  then
    # the checkpoints keep moving while the backfill is well under way
    if [ -z "$cps0" ]; then cps0=$cps
    elif [ "$early_cp" = 0 ] && [ "$cps" -gt "$cps0" ] &&
         [ "$(moved)" -eq "$nsrc" ]; then
      early_cp=1
      echo "  checkpoints moved ($cps0 -> $cps, every source) while" \
        "$published of $total were published"
    fi
  fi
  [ "$published" -ge "$total" ] && break
  sleep 1
done
hwm=$(awk '/^VmHWM:/ {print int($2 / 1024)}' "/proc/$EB_PID/status")
echo "  $published events published in $(( $(date +%s) - t0 ))s;" \
  "peak RSS ${hwm} MB (bound ${RSS_MB} MB)"
check "all $total events published" test "$published" -ge "$total"
check "every checkpoint advances during the backfill" test "$early_cp" -eq 1
case "$B" in
  */asan | */ubsan) echo "  (sanitizer build: peak RSS not judged)" ;;
  *) check "peak RSS ${hwm} MB < ${RSS_MB} MB" test "$hwm" -lt "$RSS_MB" ;;
esac
if [ -z "${EB_BACKFILL_NO_CHECK:-}" ]; then
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 60 > "$T/check.json" 2>&1
  check "kafka holds every version exactly once" test $? -eq 0
  head -c 600 "$T/check.json"; echo
fi
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
finish
