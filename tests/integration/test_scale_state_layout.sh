#!/usr/bin/env bash
# State partitions (docs/scaling.md, "State partitions"): an existing
# sharded deployment whose state topics have ONE partition (made before
# they were partitioned by shard) keeps working: each shard's restore
# reads the topics whole, and a warning says how to partition them. Then
# partitions are added while a replica runs (kafka-topics.sh --alter, here
# through the Admin API), and hand-overs after that read partition 0 (the
# records from before) plus the shard's own. Through all of it every event
# version is in Kafka exactly once.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 47 --accounts close=3,kota=3 \
  --backlog 80 --backlog-span 2h --rate 4 --latency-ms 20 \
  || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 3s --start 1d --listen 127.0.0.1:0 > "$T/cfg0.json"
$PY - "$T/cfg0.json" > "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["scale"] = {"shards": 4, "rebalance_timeout": "5s",
                "session_timeout": "6s"}
json.dump(cfg, sys.stdout, indent=2)
PY
SP=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["kafka"].get("state_prefix", "evbridge"))' "$T/cfg.json")

# topics.py create|grow|parts: the state topics as an older evbridge made
# them (one partition each), then with 5 (scale.shards + 1).
cat > "$T/topics.py" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic, NewPartitions
bs, sp, verb = sys.argv[1:4]
a = AdminClient({"bootstrap.servers": bs})
names = [sp + ".checkpoints", sp + ".seen"]
if verb == "create":
    fs = a.create_topics([
        NewTopic(names[0], 1, config={"cleanup.policy": "compact"}),
        NewTopic(names[1], 1, config={"cleanup.policy": "delete"})])
elif verb == "grow":
    fs = a.create_partitions([NewPartitions(n, 5) for n in names])
if verb in ("create", "grow"):
    for f in fs.values():
        f.result(30)
    time.sleep(1)
md = a.list_topics(timeout=10)
print(" ".join(str(len(md.topics[n].partitions)) for n in names))
PY
check "state topics made with one partition each" \
  test "$($PY "$T/topics.py" "$BS" "$SP" create)" = "1 1"

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
metric_sum() { # metric_sum NAME REPLICA...
  local sum=0 r v
  for r in "${@:2}"; do
    v=$(curl -s "http://127.0.0.1:${RPORT[$r]}/metrics" | awk -v m="$1" \
      '$1 == m || index($1, m "{") == 1 {n += $2} END {print int(n)}')
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
all_owned() { # all_owned REPLICA...: the 4 shards run, once each
  test "$(metric_sum evbridge_shards_owned "$@")" -eq 4 &&
    test "$(metric_sum evbridge_shard_running "$@")" -eq 4
}

start_replica r1 || { bad "start r1"; finish; exit 1; }
start_replica r2 || { bad "start r2"; finish; exit 1; }
check "two replicas run the 4 shards" wait_for "4 shards" 120 all_owned r1 r2
check "the one-partition layout is read whole" \
  grep -q "restored .* (whole state topics read)" "$T"/evbridge.r1.1.log \
  "$T"/evbridge.r2.2.log
check "a warning says how to partition the state topics" \
  grep -q "state topic $SP.checkpoints has 1 partition, not 5 (scale.shards + 1).*--alter --topic $SP.checkpoints --partitions 5" \
  "$T"/evbridge.r1.1.log "$T"/evbridge.r2.2.log
check "evbridge did not repartition them itself" \
  test "$($PY "$T/topics.py" "$BS" "$SP" parts)" = "1 1"
sleep 3

# A hand-over on the old layout (r1 killed: r2 restores all 4 shards).
kill -KILL "${RPID[r1]}"; wait "${RPID[r1]}"
check "r2 takes over r1's shards (old layout)" \
  wait_for "4 shards on r2" 120 all_owned r2
sleep 2

# Partitions added while r2 runs: its shards keep writing to partition 0
# (their next owner reads it), and every restore from now on reads
# partition 0 plus its own.
check "partitions added: 5 each" \
  test "$($PY "$T/topics.py" "$BS" "$SP" grow)" = "5 5"
sleep 3
start_replica r1 || bad "restart r1"
check "r1 gets shards back" wait_for "4 shards on r1 r2" 120 all_owned r1 r2
sleep 3
kill -TERM "${RPID[r2]}"; wait "${RPID[r2]}"
check "r2 exits 0 on SIGTERM" test $? -eq 0
check "r1 takes over r2's shards (new layout)" \
  wait_for "4 shards on r1" 120 all_owned r1
check "after the change a shard reads only its own partition and partition 0" \
  grep -q "restored .* (state partition of its own)" "$T"/evbridge.r1.3.log
start_replica r2 || bad "restart r2"
check "r2 gets shards back" wait_for "4 shards on r1 r2" 120 all_owned r1 r2
sleep 4

sim_control '{"target":"all","set":{"rate":0}}'
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "kafka converges to the ground truth" \
  wait_for "convergence" 90 converged
cat "$T/check.json"
field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
check "zero missing" test "$(field "$T/check.json" missing)" -eq 0
check "zero duplicated" test "$(field "$T/check.json" duplicates)" -eq 0

# Where the state records went: the shards' own partitions got records
# once the topics had them.
$PY - "$BS" "$SP" > "$T/parts.txt" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "layout-check"})
for t in (sys.argv[2] + ".checkpoints", sys.argv[2] + ".seen"):
    ends = [c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
            for p in range(5)]
    print(t, " ".join(map(str, ends)))
c.close()
PY
cat "$T/parts.txt"
own_used() { # own_used TOPIC: partition 0 and some of 1..4 hold records
  awk -v t="$1" '$1 == t && $2 > 0 && ($3 + $4 + $5 + $6) > 0 {ok=1}
    END {exit !ok}' "$T/parts.txt"
}
check "checkpoints in partition 0 (old) and in shards' own partitions" \
  own_used "$SP.checkpoints"
check "seen ids in partition 0 (old) and in shards' own partitions" \
  own_used "$SP.seen"

for r in r1 r2; do
  stop_pid "${RPID[$r]}"; rc=$?
  check "$r exits 0 on SIGTERM" test "$rc" -eq 0
done

# The control and intake topics have one partition per shard: a replica
# started with another shard count refuses to run, and says why.
$PY - "$T/cfg.json" > "$T/cfg3.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["scale"]["shards"] = 3
json.dump(cfg, sys.stdout, indent=2)
PY
timeout 60 "$B/bin/evbridge" --config "$T/cfg3.json" > "$T/evbridge.3.log" 2>&1
rc=$?
check "scale.shards 3 on topics made for 4: refused (exit $rc)" \
  test "$rc" -ne 0 -a "$rc" -ne 124
check "the refusal names both counts" \
  grep -q "scale.shards is 3 but topic .* has 4 partition(s)" "$T/evbridge.3.log"
finish
