#!/usr/bin/env bash
# evbridge-kafka-mock: flags, the bootstrap line and port file, topics it
# pre-creates (checked with kcat), and a clean exit 0 on SIGTERM and SIGINT.
set -u
bin="${EB_BUILD_DIR:-build/release}/bin/evbridge-kafka-mock"
mult=${EB_TEST_TMOUT_MULT:-1}
pass=0
fail=0
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # name, then a command that must succeed
  local name=$1
  shift
  if "$@"; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name"
  fi
}

wait_for_file() { # file, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

# --help / --version / bad arguments
"$bin" --help >"$tmp/help" 2>&1
check "help exits 0" test $? -eq 0
check "help shows usage" grep -q -- "--brokers N" "$tmp/help"
"$bin" --version >"$tmp/version" 2>&1
check "version exits 0" test $? -eq 0
check "version names librdkafka" grep -q "librdkafka" "$tmp/version"
for bad in "--brokers 0" "--brokers 17" "--brokers x" "--topic nocolon" \
           "--topic t:0" "--topic :3" "--port-file" "--bogus"; do
  # shellcheck disable=SC2086
  "$bin" $bad >/dev/null 2>"$tmp/err"
  rc=$?
  check "rejects '$bad' with exit 2" test "$rc" -eq 2
done
check "bad argument is named" grep -q 'bad argument "--bogus"' "$tmp/err"

# A running cluster: 2 brokers, 2 topics, port file, SIGTERM
"$bin" --brokers 2 --port-file "$tmp/port" --topic crm.a.b:3 \
       --topic with.colon:x:2 >"$tmp/out" 2>"$tmp/stderr" &
pid=$!
check "port file written" wait_for_file "$tmp/port" $((10 * mult))
bs=$(cat "$tmp/port" 2>/dev/null)
check "stdout has bootstrap.servers" \
  grep -qx "bootstrap.servers=$bs" "$tmp/out"
check "two loopback brokers" \
  bash -c "[[ '$bs' =~ ^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]]"
timeout $((30 * mult)) kcat -b "$bs" -L >"$tmp/meta" 2>&1
check "kcat lists 2 brokers" grep -q " 2 brokers:" "$tmp/meta"
check "topic crm.a.b has 3 partitions" \
  grep -q 'topic "crm.a.b" with 3 partitions' "$tmp/meta"
check "name split at the last colon" \
  grep -q 'topic "with.colon:x" with 2 partitions' "$tmp/meta"
echo '{"x":1}' | timeout $((30 * mult)) kcat -P -b "$bs" -t crm.a.b -k k1 \
  2>>"$tmp/stderr"
got=$(timeout $((30 * mult)) kcat -C -b "$bs" -t crm.a.b -e -q \
  -X isolation.level=read_committed -f '%k %s\n' 2>>"$tmp/stderr")
check "a record round-trips" test "$got" = 'k1 {"x":1}'
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
check "SIGTERM exits 0" test "$rc" -eq 0

"$bin" --brokers 1 >"$tmp/out2" 2>/dev/null &
pid=$!
check "starts without a port file" wait_for_file "$tmp/out2" $((10 * mult))
kill -INT "$pid"
wait "$pid"
rc=$?
pid=""
check "SIGINT exits 0" test "$rc" -eq 0

"$bin" --port-file "$tmp/no/such/dir/port" >/dev/null 2>"$tmp/err"
check "unwritable port file fails" test $? -eq 1

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
