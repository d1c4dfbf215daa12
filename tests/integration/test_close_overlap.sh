#!/usr/bin/env bash
# A Close walk reads down through what is new and Close's five minutes of
# late visibility, then stops at the first page whose older seconds hold
# the counts the last walk saw: the rest of the overlap is not downloaded
# again. Here a 30-minute overlap over a 30-minute backlog of 600 events
# (about 530 once Close consolidated some): the walk that keeps counts
# reads all of it (11 pages of 50), the walks after it only the last five
# minutes or so. Then live events: Kafka must
# still hold every event version exactly once, read_committed.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 12 --accounts close=1 --backlog 600 --backlog-span 30m \
  --rate 0 --limits off || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 2s --start 1h --timeout 5s > "$T/cfg0.json"
$PY -c '
import json, sys
c = json.load(open(sys.argv[1]))
for s in c["sources"]:
    s.setdefault("poll", {}).update({"overlap": "30m", "page_size": 50})
json.dump(c, open(sys.argv[2], "w"))' "$T/cfg0.json" "$T/cfg.json"
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"

(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)

converged() {
  curl -s -f "$SIM_ORIGIN/_sim/truth" > "$T/truth.jsonl"
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
}
check "backlog: every event version once" wait_for "backlog" 120 converged
cat "$T/check.json"

walks() { grep -c 'source=close-1 walk done' "$T/evbridge.log"; }
walks_at_least() { [ "$(walks)" -ge "$1" ]; }
# Walk 1 starts from poll.start, walk 2 from its checkpoint and keeps the
# counts; from walk 3 on the overlap below the last five minutes is known.
check "five walks done" wait_for "walks" 90 walks_at_least 5
pages() { # pages of walk N
  grep 'source=close-1 walk done' "$T/evbridge.log" | sed -n "${1}p" |
    sed -E 's/.* in ([0-9]+) page\(s\).*/\1/'
}
p2=$(pages 2); p5=$(pages 5)
echo "pages: walk 2 $p2, walk 5 $p5"
check "the walk that keeps counts reads the whole overlap ($p2 pages)" \
  test "${p2:-0}" -ge 10
check "a later walk stops where its counts match ($p5 pages, was $p2)" \
  test "${p5:-99}" -le 5

sim_control '{"target":"close-1","set":{"rate":20}}'
sleep 6
sim_control '{"target":"close-1","set":{"rate":0}}'
check "live events after: every event version once" \
  wait_for "live" 120 converged
cat "$T/check.json"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
finish
