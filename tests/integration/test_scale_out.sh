#!/usr/bin/env bash
# Scale-out (docs/scaling.md): three evbridge replicas share 8 shards of 16
# simulated accounts through one real Kafka broker. Mid-run one
# replica is SIGKILLed and restarted, one is stopped with SIGTERM and
# restarted, and a fourth joins. Signed webhooks go to every replica (each
# account's webhooks to one of them, whichever shard owns the account).
# Then Kafka must hold the simulator's ground truth exactly once, no
# account may ever have had two requests in flight at once (the
# simulator's max_concurrent: one replica polls a source at a time, with a
# 40 ms response latency so that two pollers would overlap), and the
# intake tier must have carried the webhooks.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

# A real broker with auto-creation on, as most clusters: evbridge itself
# creates the state, shard and intake topics (CreateTopics).
start_kafka || { bad "kafka start"; finish; exit 1; }

start_sim --seed 31 --accounts kommo=4,close=6,kota=6 \
  --backlog 120 --backlog-span 2h --rate 4 --consolidate close=0.3 \
  --latency-ms 40 --webhook-share 0.5 --webhook-dup 0.2 \
  --webhook-attempts 30 --webhook-retry-max 1s \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 3s --webhooks --listen 127.0.0.1:0 \
  > "$T/cfg0.json"
$PY - "$T/cfg0.json" > "$T/cfg.json" <<'PY'
import json, os, sys
cfg = json.load(open(sys.argv[1]))
cfg["scale"] = {"shards": 8, "rebalance_timeout": "5s",
                "session_timeout": "6s"}
if os.environ.get("EB_SCALE_DEBUG"):
    cfg["kafka"]["properties"] = {"debug": "cgrp"}
json.dump(cfg, sys.stdout, indent=2)
PY
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

declare -A RPID RPORT
run=0
start_replica() { # start_replica NAME
  run=$((run + 1))
  rm -f "$T/port.$1"
  (exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port.$1" \
    > "$T/evbridge.$1.$run.log" 2>&1) &
  RPID[$1]=$!
  PIDS+=(${RPID[$1]})
  wait_for "replica $1 listening" 15 test -s "$T/port.$1" || return 1
  RPORT[$1]=$(cat "$T/port.$1")
}
# Each account's webhooks go to one replica (by its number).
point_webhooks() { # point_webhooks NAME... (replicas to spread over)
  local names=("$@") i=0 a url
  for a in $(head -1 "$T/sim.out" | $PY -c '
import json, sys
for a in json.load(sys.stdin)["accounts"]:
    print(a["account"])'); do
    url="http://127.0.0.1:${RPORT[${names[$((i % ${#names[@]}))]}]}/webhooks/{account}"
    case $a in kommo-*) url="$url/{token}" ;; esac
    sim_control "{\"target\":\"$a\",\"set\":{\"webhook_url\":\"$url\"}}"
    i=$((i + 1))
  done
}
metric_sum() { # metric_sum NAME REPLICA... -> summed over the replicas:
  # the sample NAME (labels included, exactly), or every sample of the
  # family NAME{...}
  local sum=0 r v
  for r in "${@:2}"; do
    v=$(curl -s "http://127.0.0.1:${RPORT[$r]}/metrics" | awk -v m="$1" \
      '$1 == m || index($1, m "{") == 1 {n += $2} END {print int(n)}')
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
running() { metric_sum evbridge_shard_running "$@"; }
all_owned() { # all_owned REPLICA... : the 8 shards run, once each
  test "$(metric_sum evbridge_shards_owned "$@")" -eq 8 &&
    test "$(running "$@")" -eq 8
}

for r in r1 r2 r3; do
  start_replica $r || { bad "start $r"; finish; exit 1; }
done
point_webhooks r1 r2 r3
# Shared means each replica owns some: right after the start the first
# replica may own all 8 until the group has rebalanced.
each_owns() { # each_owns REPLICA...: every one owns a shard, 8 run once each
  local r
  for r in "$@"; do
    test "$(metric_sum evbridge_shards_owned "$r")" -gt 0 || return 1
  done
  all_owned "$@"
}
check "three replicas share the 8 shards" \
  wait_for "8 shards owned" 120 each_owns r1 r2 r3
echo "  owned: r1=$(metric_sum evbridge_shards_owned r1)" \
  "r2=$(metric_sum evbridge_shards_owned r2)" \
  "r3=$(metric_sum evbridge_shards_owned r3)"
check "no replica owns them all" \
  test "$(metric_sum evbridge_shards_owned r1)" -lt 8
sleep 3

# A replica dies: its shards move once the group notices (session timeout).
kill -KILL "${RPID[r2]}"; wait "${RPID[r2]}"
check "r2 SIGKILLed" test $? -eq 137
point_webhooks r1 r3
check "survivors take over r2's shards" \
  wait_for "8 shards owned by r1 r3" 120 all_owned r1 r3
start_replica r2 || bad "restart r2"
point_webhooks r1 r2 r3
sleep 4

# A replica is stopped cleanly: it hands its shards back at once.
kill -TERM "${RPID[r1]}"; wait "${RPID[r1]}"
check "r1 exits 0 on SIGTERM" test $? -eq 0
point_webhooks r2 r3
check "r2 and r3 take over r1's shards" \
  wait_for "8 shards owned by r2 r3" 120 all_owned r2 r3
start_replica r1 || bad "restart r1"
start_replica r4 || bad "start r4"
point_webhooks r1 r2 r3 r4
r4_has_shards() {
  test "$(metric_sum evbridge_shards_owned r4)" -gt 0 && all_owned r1 r2 r3 r4
}
check "the fourth replica gets shards; the 8 run once each" \
  wait_for "r4 owns shards" 120 r4_has_shards
# SIGHUP on a replica after every source's poll interval changed: its
# shards restart their sources from where they are (nothing is fetched
# twice into Kafka: the truth check below), each once its request in
# flight is over (max_concurrent below).
$PY - "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for s in cfg["sources"]:
    s.setdefault("poll", {})["interval"] = "900ms"
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
kill -HUP "${RPID[r3]}"
reloaded() { grep -q "reload done: 0 added, 0 removed, [1-9][0-9]* changed" \
  "$T"/evbridge.r3.*.log; }
check "r3 reloads its configuration and restarts its changed sources" \
  wait_for "r3 reload" 10 reloaded
check "the 8 shards still run once each after the reload" \
  wait_for "8 running" 20 all_owned r1 r2 r3 r4
sleep 4

sim_control '{"target":"all","set":{"rate":0}}'
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --allow-disorder --quiet --timeout 20 \
    > "$T/check.json" 2>&1
}
check "kafka converges to the ground truth" \
  wait_for "convergence" 90 converged
cat "$T/check.json"
field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
check "zero missing" test "$(field "$T/check.json" missing)" -eq 0
check "zero duplicated" test "$(field "$T/check.json" duplicates)" -eq 0
# Webhooks and polls of one entity race (the platforms promise no order),
# so per-key order is reported, not required here.
echo "  per-key disorder (webhook vs poll): $(field "$T/check.json" disorder)"

curl -s -f "$SIM_ORIGIN/_sim/stats" > "$T/stats.json"
maxc=$($PY -c '
import json, sys
print(max(a["max_concurrent"] for a in json.load(open(sys.argv[1]))["accounts"]))' \
  "$T/stats.json")
check "no account ever had two pollers at once (max_concurrent $maxc)" \
  test "$maxc" -le 1
$PY -c '
import json, sys, time
for a in json.load(open(sys.argv[1]))["accounts"]:
    if a["max_concurrent"] > 1:
        t = a["max_concurrent_at_ms"]
        print("  %s: %d requests at once at %s.%03dZ (%d overlaps)" % (
            a["account"], a["max_concurrent"],
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)),
            t % 1000, a["overlaps"]))' "$T/stats.json"
delivered=$($PY -c '
import json, sys
print(sum(a["webhooks"]["delivered"] for a in json.load(open(sys.argv[1]))["accounts"]))' \
  "$T/stats.json")
written=$(metric_sum 'evbridge_intake_records_total{result="written"}' r1 r2 r3 r4)
echo "  webhooks delivered by the simulator: $delivered; intake records" \
  "written by the live replicas: $written"
check "webhooks were delivered" test "$delivered" -gt 0
check "the intake tier carried webhooks" test "$written" -gt 0
# The owners consumed the intake and sent its offsets inside their
# transactions (consume-transform-produce). librdkafka's mock acknowledges
# TxnOffsetCommit but does not store the offsets, so a new owner re-reads
# its partition from the start and the restored dedupe ids drop what was
# published (0 duplicates above); a real broker stores them.
oc=$(metric_sum evbridge_shard_offset_commits_total r1 r2 r3 r4)
echo "  transactions that committed intake offsets (live replicas): $oc"
check "intake offsets go into the owners' transactions" test "$oc" -gt 0
check "every start logged its shards' restore" \
  grep -q "restored [0-9]* ids and [0-9]* checkpoints" "$T"/evbridge.r4.*.log

for r in r1 r2 r3 r4; do
  stop_pid "${RPID[$r]}"; rc=$?
  check "$r exits 0 on SIGTERM" test "$rc" -eq 0
done
finish
