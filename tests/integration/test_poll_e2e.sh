#!/usr/bin/env bash
# Polling pipeline end to end: evbridge against the simulator (two accounts
# per provider, a backlog, live arrivals, Close consolidation, the
# platforms' rate limits and injected faults, and the strict simulator's
# late events, unstable same-second order, expiring Close cursors and one
# poison event per account), publishing to a real Kafka broker started
# here. Kafka must hold exactly the simulator's ground truth: no
# event missing, none twice, each on its topic with its key, and every
# entity's events in order. A source whose upstream is down must not stall
# the others, and a compliant run never gets a Kommo 403.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 11 --accounts kommo=2,close=2,kota=2 \
  --backlog 400 --backlog-span 3h --rate 4 --consolidate close=0.3 \
  --faults 500=0.03,503=0.02,reset=0.02,truncated=0.02,malformed=0.02,html=0.01,slow=0.01 \
  --slow-ms 4000 --down close-2=503 --kommo-token-ttl 5s \
  || { bad "sim start"; finish; exit 1; }

# The Kommo sources authenticate with OAuth: 5 s access tokens, renewed
# (and persisted) many times during the run, under the same faults.
$PY -c 'import secrets; print(secrets.token_hex(32))' > "$T/token.key"
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --oauth "$T/token.key" > "$T/cfg.json"
# Kommo pages of 20: live seconds (4 events a second) are split by page
# boundaries, which the simulator orders anew on every request.
$PY -c 'import json,sys; c=json.load(open(sys.argv[1]))
for s in c["sources"]:
    if s["provider"] == "kommo": s.setdefault("poll", {})["page_size"] = 20
json.dump(c, open(sys.argv[1], "w"))' "$T/cfg.json"
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)

# While close-2 is down, the other sources make progress.
others_progress() {
  local n
  n=$($PY tests/tools/truth_check.py --bootstrap "$BS" --truth /dev/null \
        --quiet --timeout 20 2>/dev/null | $PY -c \
        'import json,sys; print(json.load(sys.stdin)["messages"])')
  [ "${n:-0}" -ge 1000 ]
}
check "other sources progress while close-2 is down" \
  wait_for "1000 messages from the healthy sources" 40 others_progress
sim_control '{"target":"close-2","set":{"down":"off"}}'
# One poison event per account among the live ones: each must land on the
# dead-letter topic exactly once while its source goes on (truth_check).
sim_control '{"target":"all","poison":1}'

sleep 6
# Stop live arrivals and faults; let evbridge catch up.
sim_control '{"target":"all","set":{"rate":0,"faults":"none"}}'
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "kafka converges to the ground truth" wait_for "convergence" 90 converged
cat "$T/check.json"

curl -s -f "$SIM_ORIGIN/_sim/stats" > "$T/stats.json"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
stop_pid $SIM_PID; rc=$?
check "simulator exits 0" test "$rc" -eq 0
check "final check: exactly the truth" \
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl"

# Faults and rate limits really happened, evbridge rode them out, and no
# Kommo account was ever banned (no 403, rate limit honoured).
$PY - "$T/stats.json" > "$T/stats.txt" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
faults = sum(sum(a["faults"].values()) + a["status"]["5xx"]
             for a in st["accounts"])
k403 = sum(a["status"]["403"] for a in st["accounts"]
           if a["provider"] == "kommo")
r429 = sum(a["status"]["429"] for a in st["accounts"])
banned = sum(1 for a in st["accounts"] if a["banned"])
print(faults, k403, r429, banned)
PY
read -r faults k403 r429 banned < "$T/stats.txt"
echo "simulator: faults=$faults kommo_403=$k403 429s=$r429 banned=$banned"
check "faults were injected ($faults)" test "$faults" -gt 0
check "no Kommo 403 ($k403)" test "$k403" -eq 0
check "no account banned" test "$banned" -eq 0
check "evbridge logged no ban" bash -c "! grep -q BANNED '$T/evbridge.log'"
check "the Kommo sources renewed their OAuth tokens" bash -c \
  "grep -c 'source=kommo-.* OAuth token pair renewed and persisted' '$T/evbridge.log' | awk '{exit !(\$1 >= 4)}'"
check "no OAuth refusal" bash -c "! grep -q 'REFUSED to renew' '$T/evbridge.log'"
# kcat reads what we published too: the largest topics, compared one by
# one with what confluent-kafka read.
$PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
  --quiet --topic-counts "$T/topics.txt" > /dev/null
sort -k2 -n -r "$T/topics.txt" | head -6 > "$T/top.txt"
kpids=()
while read -r t n; do
  (kcat -C -b "$BS" -t "$t" -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | wc -l > "$T/kcat.$t") &
  kpids+=($!)
done < "$T/top.txt"
wait "${kpids[@]}"
kcat_ok=1
while read -r t n; do
  k=$(cat "$T/kcat.$t")
  if [ "$k" -ne "$n" ]; then kcat_ok=0; echo "kcat $t: $k, confluent-kafka: $n"; fi
done < "$T/top.txt"
check "kcat and confluent-kafka agree on $(wc -l < "$T/top.txt") topics" \
  test "$kcat_ok" -eq 1
finish
