#!/usr/bin/env bash
# What a source is doing (issue 19): a log line per finished walk, GET
# /status as JSON (state, lag, next poll, last error, backfill progress)
# and `evbridge status`, which renders it for a person. Embedded Kafka:
# nothing here depends on the broker.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_sim --seed 19 --accounts kommo=0,close=1,kota=1 --backlog 120 \
  --backlog-span 2h --rate 0 || { bad "sim start"; finish; exit 1; }
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --interval 1s \
  --start 3h --listen 127.0.0.1:0 > "$T/cfg.json"
# One more source whose upstream refuses connections: its last error.
closed=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
$PY - "$T/cfg.json" "$closed" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["sources"].append({"name": "down-1", "provider": "kota",
    "base_url": "http://127.0.0.1:%s" % sys.argv[2],
    "credentials": {"api_key": "status-test-secret-key"},
    "poll": {"interval": "1s"}})
json.dump(cfg, open(sys.argv[1], "w"))
PY
(exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
  > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
wait_for "port file" 10 test -s "$T/port"
URL="http://127.0.0.1:$(cat "$T/port")"

check "a walk is logged with events, pages, times and duration" \
  wait_for "walk line" 20 grep -qE \
  'source=close-1 walk done: [1-9][0-9]* event\(s\) in [1-9][0-9]* page\(s\), event times 20[0-9T:-]+Z \.\. 20[0-9T:-]+Z, [0-9]+ ms' \
  "$T/evbridge.log"
wait_for "kota-1 walk" 20 grep -q 'source=kota-1 walk done' "$T/evbridge.log"
check "the failing source has a last error" \
  wait_for "down-1 error" 10 sh -c "curl -s '$URL/status' | grep -q 'request failed'"

curl -s -D "$T/status.hdr" "$URL/status" > "$T/status.json"
check "/status is JSON" grep -qi '^content-type: application/json' "$T/status.hdr"
check "/status: every field of every source" $PY - "$T/status.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
assert st["ready"] is True, st
src = {s["name"]: s for s in st["sources"]}
assert set(src) == {"close-1", "kota-1", "down-1"}, src.keys()
for n in ("close-1", "kota-1"):
    s = src[n]
    for k in ("state", "oldest_event_time", "newest_event_time",
              "backfill_target", "next_poll", "last_walk_end"):
        assert s[k], (n, k, s)
    assert isinstance(s["lag_seconds"], int) and s["lag_seconds"] >= 0, s
    assert s["oldest_event_time"] <= s["newest_event_time"], s
    assert s["backfill_target"] <= s["oldest_event_time"], s
    assert s["events"] > 0 and s["walks"] > 0 and s["polls"] > 0, s
    assert s["last_error"] is None, s
d = src["down-1"]
assert "request failed" in d["last_error"] and d["last_error_time"], d
assert d["newest_event_time"] is None and d["lag_seconds"] is None, d
PY
check "no secret in /status" sh -c "! grep -q status-test-secret-key '$T/status.json'"

"$B/bin/evbridge" status "$URL" > "$T/status.txt" 2>&1
rc=$?
cat "$T/status.txt"
check "evbridge status exits 0 when ready" test "$rc" -eq 0
check "evbridge status: a row per source" \
  sh -c "grep -q '^close-1 .*close' '$T/status.txt' && grep -q '^kota-1 ' '$T/status.txt' && grep -q '^down-1 .*request failed' '$T/status.txt'"
check "evbridge status: backfill progress and target" \
  grep -qE 'backfill: events from 20.* to 20.*, target 20' "$T/status.txt"
check "evbridge status: next poll" grep -q ' in [0-9]' "$T/status.txt"
check "POST /status is 405" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/status")" = 405
check "/statusx is 404" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/statusx")" = 404
stop_pid "$EB_PID"
check "evbridge exits 0" test $? -eq 0
"$B/bin/evbridge" status "$URL" > /dev/null 2> "$T/status.err"
rc=$?
check "evbridge status: no answer is exit 1 with the URL" \
  sh -c "[ $rc -eq 1 ] && grep -q '$URL/status' '$T/status.err'"
finish
