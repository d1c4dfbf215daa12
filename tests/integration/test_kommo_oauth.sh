#!/usr/bin/env bash
# Kommo OAuth 2.0 end to end against the strict simulator (3 s access
# tokens, single-use rotating refresh tokens): events flow across many
# renewals; a 401 mid-walk renews and goes on; a 503 of the token endpoint
# is retried; a restart goes on with the
# persisted pair although the configured refresh token is spent by then;
# a SIGKILL between receiving a new pair and persisting it (test hook
# EB_TEST_OAUTH_HOLD_MS) loses that pair, so the next start is refused and
# stops those sources loudly (metric, log, /readyz, status) while the
# other source goes on; re-authorizing (new refresh_token, SIGHUP) brings
# them back from their checkpoints, and the pairs are restored by the
# shards that own the sources (scale.shards). Kafka ends with exactly the
# simulator's truth, and no token ever reaches a log line.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka || { bad "kafka start"; finish; exit 1; }
start_sim --seed 17 --accounts kommo=2,close=1 --backlog 200 \
  --backlog-span 1h --rate 3 --kommo-token-ttl 3s \
  || { bad "sim start"; finish; exit 1; }

$PY -c 'import secrets; print(secrets.token_hex(32))' > "$T/token.key"
$PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
  --interval 1s --timeout 2s --listen 127.0.0.1:0 --oauth "$T/token.key" \
  > "$T/cfg.json"
check "config valid" "$B/bin/evbridge" --check-config "$T/cfg.json"
check "the Kommo sources have no long-lived token" $PY -c '
import json, sys
c = json.load(open(sys.argv[1]))
k = [s for s in c["sources"] if s["provider"] == "kommo"]
sys.exit(0 if len(k) == 2 and all("token" not in s["credentials"] and
         "refresh_token" in s["credentials"] for s in k) else 1)' "$T/cfg.json"

start_eb() { # start_eb LOG [VAR=value...]
  local log=$1; shift
  rm -f "$T/port"
  (exec env "$@" "$B/bin/evbridge" --config "$T/cfg.json" \
    --port-file "$T/port" > "$T/$log" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
  wait_for "evbridge listening" 30 test -s "$T/port" || return 1
  EB="http://127.0.0.1:$(cat "$T/port")"
}
metric() { # metric NAME SOURCE -> integer value (-1: absent)
  curl -s "$EB/metrics" | $PY -c '
import re, sys
name, src = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    m = re.match(r"(\w+)\{(.*)\} (\S+)$", line.strip())
    if m and m.group(1) == name and ("source=\"%s\"" % src) in m.group(2):
        print(int(float(m.group(3)))); break
else:
    print(-1)' "$1" "$2"
}
at_least() { [ "$(metric "$1" "$2")" -ge "$3" ]; }
log_has() { grep -q -- "$2" "$T/$1"; }
converged() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    --quiet --timeout 20 > "$T/check.json" 2>&1
}

# 1. Many renewals while events flow.
start_eb run1.log || { bad "evbridge start"; finish; exit 1; }
check "kommo-1 renews its token again and again" \
  wait_for "5 renewals of kommo-1" 120 at_least \
  evbridge_source_oauth_refreshes_total kommo-1 5
check "kommo-2 renews its token again and again" \
  wait_for "5 renewals of kommo-2" 120 at_least \
  evbridge_source_oauth_refreshes_total kommo-2 5
check "close-1 has no OAuth" test "$(metric \
  evbridge_source_oauth_refreshes_total close-1)" -eq 0

# 2. A 401 mid-walk (the access token revoked before it expires): renew
# once and go on. A revocation that lands just before a due renewal is not
# seen, so revoke until one is.
revoked_401() {
  sim_control '{"target":"kommo-1","oauth":"revoke"}'
  sleep 1
  log_has run1.log 'source=kommo-1 access token refused (HTTP 401): renewing it'
}
check "a 401 mid-walk renews the token" wait_for "a 401 on kommo-1" 60 revoked_401
n401=$(metric evbridge_source_oauth_refreshes_total kommo-1)
check "kommo-1 goes on after the 401" wait_for "renewals after the 401" 60 \
  at_least evbridge_source_oauth_refreshes_total kommo-1 $((n401 + 2))
# A transient failure of the token endpoint (an outage: 503) is retried
# with backoff and refuses nothing.
renewal_failed() {
  log_has run1.log 'source=kommo-2 OAuth token renewal failed (HTTP 503)'
}
sim_control '{"target":"kommo-2","set":{"down":"503"}}'
check "a 503 from the token endpoint is retried" \
  wait_for "a failed renewal of kommo-2" 60 renewal_failed
sim_control '{"target":"kommo-2","set":{"down":"off"}}'
n503=$(metric evbridge_source_oauth_refreshes_total kommo-2)
check "kommo-2 renews again after the outage" wait_for "renewals after 503" \
  90 at_least evbridge_source_oauth_refreshes_total kommo-2 $((n503 + 2))
check "no source refused or stopped in the first run" \
  bash -c "! grep -q 'REFUSED\|STOPPED' '$T/run1.log'"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0

# 3. Restart: the configured refresh tokens were spent long ago; only the
# persisted pair lets the sources go on.
start_eb run2.log || { bad "evbridge restart"; finish; exit 1; }
check "kommo-1 restored the persisted pair" wait_for "restore line" 30 \
  log_has run2.log 'source=kommo-1 OAuth: restored the newest persisted token pair'
check "kommo-2 restored the persisted pair" wait_for "restore line" 30 \
  log_has run2.log 'source=kommo-2 OAuth: restored the newest persisted token pair'
check "kommo-1 renews after the restart" wait_for "renewals after restart" 60 \
  at_least evbridge_source_oauth_refreshes_total kommo-1 3
check "kommo-2 renews after the restart" wait_for "renewals after restart" 60 \
  at_least evbridge_source_oauth_refreshes_total kommo-2 3
check "no refusal after the restart" bash -c "! grep -q REFUSED '$T/run2.log'"
stop_pid $EB_PID

# 3b. A pair received and not yet persisted (held by the test hook) is not
# dropped: a reload hands it to the restarted source, which persists it
# before using it; a SIGTERM persists it before exit.
start_eb run2b.log EB_TEST_OAUTH_HOLD_MS=600000 \
  || { bad "evbridge start (hold, reload)"; finish; exit 1; }
check "kommo-1 holds a new pair" wait_for "hold kommo-1" 60 \
  log_has run2b.log 'source=kommo-1 oauth test hold'
check "kommo-2 holds a new pair" wait_for "hold kommo-2" 60 \
  log_has run2b.log 'source=kommo-2 oauth test hold'
$PY - "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for s in cfg["sources"]:
    if s["name"] == "kommo-1":
        s["poll"]["interval"] = "2s"
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
kill -HUP $EB_PID
check "the reloaded kommo-1 takes over the held pair" wait_for "hand-over" 30 \
  log_has run2b.log 'reload: source=kommo-1 takes over the new OAuth token pair, persisting it first'
check "and persists it" wait_for "persisted after the reload" 30 \
  at_least evbridge_source_oauth_refreshes_total kommo-1 1
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM with a pair held" test "$rc" -eq 0
check "the held pairs were persisted on the way out" bash -c \
  "grep -q 'source=kommo-2 OAuth token pair renewed and persisted' '$T/run2b.log'"

# 4. SIGKILL between receiving a new pair and persisting it: the pair is
# lost with the process (the upstream has spent the previous one).
start_eb run3.log EB_TEST_OAUTH_HOLD_MS=600000 \
  || { bad "evbridge start (hold)"; finish; exit 1; }
check "kommo-1 holds a new pair unpersisted" wait_for "hold kommo-1" 60 \
  log_has run3.log 'source=kommo-1 oauth test hold'
check "kommo-2 holds a new pair unpersisted" wait_for "hold kommo-2" 60 \
  log_has run3.log 'source=kommo-2 oauth test hold'
check "the pairs persisted at the reload and the SIGTERM were accepted" \
  bash -c "! grep -q REFUSED '$T/run3.log'"
kill -KILL $EB_PID
wait $EB_PID 2>/dev/null

start_eb run4.log || { bad "evbridge start after SIGKILL"; finish; exit 1; }
check "the lost pair: kommo-1 stopped loudly with what to do" \
  wait_for "refusal of kommo-1" 60 log_has run4.log \
  'source=kommo-1 Kommo REFUSED to renew the OAuth token (HTTP 400: .*Token has been revoked.*STOPPED (checkpoint kept). Re-authorize the integration in Kommo, put the new refresh token in credentials.refresh_token'
check "kommo-2 stopped too" wait_for "refusal of kommo-2" 60 \
  log_has run4.log 'source=kommo-2 Kommo REFUSED to renew the OAuth token'
check "metric evbridge_source_oauth_refused is 1" \
  test "$(metric evbridge_source_oauth_refused kommo-1)" -eq 1
check "metric evbridge_source_oauth_refused is 0 for close-1" \
  test "$(metric evbridge_source_oauth_refused close-1)" -eq 0
curl -s -o "$T/readyz.txt" -w '%{http_code}' "$EB/readyz" > "$T/readyz.code"
check "/readyz stays 200 (webhooks, other sources) with the detail" \
  test "$(cat "$T/readyz.code")" = 200
check "/readyz names the stopped sources and what to do" grep -q \
  'ready; 2 source(s) stopped, OAuth refresh refused (re-authorize, set credentials.refresh_token): kommo-' \
  "$T/readyz.txt"
"$B/bin/evbridge" status "$EB" > "$T/status.txt" 2>&1
check "evbridge status shows the refusal" grep -q \
  'oauth: refused: re-authorize' "$T/status.txt"
check "evbridge status shows the detail" grep -q 'attention: 2 source(s)' \
  "$T/status.txt"
close_before=$(metric evbridge_source_events_received_total close-1)
sim_control '{"target":"close-1","generate":5}'
check "close-1 goes on while the Kommo sources are stopped" \
  wait_for "close-1 events" 60 at_least evbridge_source_events_received_total \
  close-1 $((close_before + 5))

# 5. Re-authorize: new refresh tokens from the platform, put in the
# configuration, SIGHUP. The sources resume from their checkpoints.
curl -s -f -X POST -d '{"target":"kommo","oauth":"reauthorize"}' "$SIM_CTL" \
  > "$T/reauth.json"
$PY - "$T/cfg.json" "$T/reauth.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
tok = json.load(open(sys.argv[2]))["refresh_tokens"]
for s in cfg["sources"]:
    if s["name"] in tok:
        s["credentials"]["refresh_token"] = tok[s["name"]]
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
kill -HUP $EB_PID
check "kommo-1 takes the re-authorized token" wait_for "re-authorized" 30 \
  log_has run4.log 'source=kommo-1 OAuth: credentials.refresh_token is not the one the persisted token pair descends from'
check "kommo-1 renews again after re-authorizing" \
  wait_for "renewals after re-authorizing" 60 at_least \
  evbridge_source_oauth_refreshes_total kommo-1 1
check "the refusal gauge is cleared by the reload" \
  test "$(metric evbridge_source_oauth_refused kommo-1)" -eq 0

# 6. Sharded (scale.shards 2, one replica): each source's pair is restored
# with its checkpoint by the shard that owns it.
stop_pid $EB_PID
$PY - "$T/cfg.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["scale"] = {"shards": 2}
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
start_eb run5.log || { bad "evbridge start (sharded)"; finish; exit 1; }
check "sharded: kommo-1 restored its pair" wait_for "restore kommo-1" 90 \
  log_has run5.log 'source=kommo-1 OAuth: restored the newest persisted token pair'
check "sharded: kommo-2 restored its pair" wait_for "restore kommo-2" 90 \
  log_has run5.log 'source=kommo-2 OAuth: restored the newest persisted token pair'
check "sharded: kommo-1 renews" wait_for "sharded renewals" 90 at_least \
  evbridge_source_oauth_refreshes_total kommo-1 2
check "sharded: kommo-2 renews" wait_for "sharded renewals" 90 at_least \
  evbridge_source_oauth_refreshes_total kommo-2 2
check "sharded: no refusal" bash -c "! grep -q REFUSED '$T/run5.log'"

sim_control '{"target":"all","set":{"rate":0}}'
check "kafka converges to the ground truth" wait_for "convergence" 120 converged
cat "$T/check.json"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
check "final check: every event exactly once" \
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl"

# The simulator's tokens start with these prefixes: none may be logged.
check "no token or secret in any log line" bash -c \
  "! grep -h 'kommo-refresh-\|kommo-access-\|kommo-client-secret' '$T'/run*.log"
check "the token key is in no log line" bash -c \
  "! grep -h -F -f '$T/token.key' '$T'/run*.log"
curl -s -f "$SIM_ORIGIN/_sim/stats" > "$T/stats.json"
check "the simulator counted the refusals and the renewals" $PY -c '
import json, sys
st = json.load(open(sys.argv[1]))
k = [a for a in st["accounts"] if a["provider"] == "kommo"]
sys.exit(0 if all(a["oauth"]["refused"] >= 1 and a["oauth"]["refreshes"] >= 10
                  for a in k) else 1)' "$T/stats.json"
finish
