#!/usr/bin/env bash
# The /metrics text of a real run passes `promtool check metrics` (format
# and Prometheus naming lint), and every family in it is documented in
# docs/operations.md.
#
# The text comes from test_metrics_render (eb_app in-process against the
# simulator on the embedded Kafka cluster, every family with samples).
# When the daemon has its HTTP listener (--port-file), the same check runs
# on /metrics scraped from a running evbridge too.
#
# promtool comes from scripts/get-promtool. Without it this test fails in
# CI (CI=true) and is skipped, saying so, elsewhere.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

if ! PROMTOOL=$(scripts/get-promtool 2>"$T/get-promtool.err"); then
  cat "$T/get-promtool.err"
  if [ "${CI:-}" = true ]; then
    bad "promtool available (scripts/get-promtool)"
    finish; exit 1
  fi
  echo "SKIP: promtool not available here (see above); CI runs this check"
  finish; exit 0
fi
echo "promtool: $PROMTOOL"

# promtool must be able to fail: a counter without _total and a family
# without HELP are rejected.
printf '# TYPE x_requests counter\nx_requests 1\n' > "$T/bad.txt"
check "promtool rejects a bad exposition" \
  bash -c "! '$PROMTOOL' check metrics < '$T/bad.txt' > /dev/null 2>&1"

promcheck() { # promcheck FILE: promtool says nothing and exits 0
  "$PROMTOOL" check metrics < "$1" > "$1.promtool" 2>&1
  local rc=$?
  if [ "$rc" -ne 0 ] || [ -s "$1.promtool" ]; then
    sed 's/^/  promtool: /' "$1.promtool"; return 1
  fi
}

"$B/tests/integration/test_metrics_render" "$T/metrics.txt" \
  > "$T/render.log" 2>&1
rc=$?
check "in-process run renders every family (test_metrics_render)" \
  test "$rc" -eq 0
[ "$rc" -eq 0 ] || tail -n 30 "$T/render.log"
check "rendered metrics written" test -s "$T/metrics.txt"
check "promtool check metrics: in-process rendering" promcheck "$T/metrics.txt"

# Every family rendered has a row in the operations guide.
undocumented() {
  local f missing=0
  for f in $(sed -n 's/^# TYPE \([a-zA-Z_:][a-zA-Z0-9_:]*\) .*/\1/p' "$1"); do
    if ! grep -q "\`$f\`" docs/operations.md; then
      echo "  not in docs/operations.md: $f"; missing=1
    fi
  done
  return $missing
}
check "every family is documented in docs/operations.md" \
  undocumented "$T/metrics.txt"

# The daemon's own listener, once it has one.
if "$B/bin/evbridge" --help 2>&1 | grep -q -- '--port-file'; then
  start_sim --accounts kommo=1,close=1,kota=1 --backlog 30 --rate 1 \
    || { bad "sim start"; finish; exit 1; }
  $PY tests/tools/sim_config.py --sim-line "$T/sim.out" --interval 1s \
    --listen 127.0.0.1:0 --webhooks > "$T/cfg.json"
  (exec "$B/bin/evbridge" --config "$T/cfg.json" --port-file "$T/port" \
    > "$T/evbridge.log" 2>&1) &
  EB_PID=$!
  PIDS+=($EB_PID)
  if wait_for "evbridge listener" 20 test -s "$T/port"; then
    addr=$(head -n 1 "$T/port")
    case "$addr" in *:*) ;; *) addr="127.0.0.1:$addr" ;; esac
    published() {
      curl -s -f "http://$addr/metrics" > "$T/scrape.txt" &&
        grep -q '^evbridge_source_events_published_total{.*} [1-9]' \
          "$T/scrape.txt" &&
        grep -q '^evbridge_source_checkpoint_lag_seconds{' "$T/scrape.txt"
    }
    check "GET /metrics shows published events" \
      wait_for "events published" 30 published
    check "promtool check metrics: GET /metrics" promcheck "$T/scrape.txt"
    check "every family served is documented in docs/operations.md" \
      undocumented "$T/scrape.txt"
    ctype=$(curl -s -o /dev/null -w '%{content_type}' "http://$addr/metrics")
    check "/metrics content type is text/plain version 0.0.4 ($ctype)" \
      bash -c "echo '$ctype' | grep -qi '^text/plain.*version=0.0.4'"
  else
    bad "evbridge wrote its listen port"
    tail -n 20 "$T/evbridge.log"
  fi
  stop_pid "$EB_PID"; rc=$?
  check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
else
  echo "note: evbridge has no --port-file yet; /metrics over HTTP not checked"
fi
finish
