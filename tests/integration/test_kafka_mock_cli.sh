#!/usr/bin/env bash
# evbridge-kafka-mock: flags, the bootstrap line and port file, topics it
# pre-creates (checked with kcat), a clean exit 0 on SIGTERM and SIGINT,
# and the fault-injection control port (--control-port-file): every
# command's answer, bad commands answered with an error line (the cluster
# keeps running), and faults that really reach a client (kcat).
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
check "help lists the control commands" \
  grep -q "push-broker-errors <id> <api> <err> <rtt_ms>" "$tmp/help"
"$bin" --version >"$tmp/version" 2>&1
check "version exits 0" test $? -eq 0
check "version names librdkafka" grep -q "librdkafka" "$tmp/version"
for bad in "--brokers 0" "--brokers 17" "--brokers x" "--topic nocolon" \
           "--topic t:0" "--topic :3" "--port-file" "--control-port-file" \
           "--bogus"; do
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
"$bin" --control-port-file "$tmp/no/such/dir/port" >/dev/null 2>"$tmp/err"
check "unwritable control port file fails" test $? -eq 1

# The control port: one answer line per command line.
"$bin" --brokers 2 --port-file "$tmp/bs3" --control-port-file "$tmp/ctl" \
       --topic ctl.t:1 >"$tmp/out3" 2>"$tmp/err3" &
pid=$!
check "control port file written" wait_for_file "$tmp/ctl" $((10 * mult))
wait_for_file "$tmp/bs3" $((10 * mult))
bs=$(cat "$tmp/bs3" 2>/dev/null)
cport=$(cat "$tmp/ctl" 2>/dev/null)
check "stdout names the control port" grep -qx "control=127.0.0.1:$cport" \
  "$tmp/out3"
ctl_open() { exec 3<>"/dev/tcp/127.0.0.1/$cport"; }
ctl() { # send one command line, print the answer line
  local l=""
  printf '%s\n' "$1" >&3 && IFS= read -r -t $((10 * mult)) l <&3
  printf '%s\n' "$l"
}
expect() { # expect PREFIX COMMAND: the answer starts with PREFIX
  local got
  got=$(ctl "$2")
  case "$got" in
    "$1"*) return 0 ;;
    *) echo "  '$2' answered '$got', expected '$1...'"; return 1 ;;
  esac
}
ctl_open
check "ping" expect "ok pong" "ping"
check "broker-down 1" expect "ok broker 1" "broker-down 1"
check "broker-up all" expect "ok 2 broker(s)" "broker-up all"
check "rtt all 0" expect "ok 2 broker(s)" "rtt all 0"
check "push-errors by names" \
  expect "ok 3 error(s) for ApiKey 26" \
  "push-errors EndTxn CONCURRENT_TRANSACTIONS RD_KAFKA_RESP_ERR_NOT_COORDINATOR 0"
check "push-errors by numbers" expect "ok 2 error(s) for ApiKey 24" \
  "push-errors 24 51 15"
check "push-broker-errors pairs" \
  expect "ok 2 error(s) for ApiKey 1 on broker 2" \
  "push-broker-errors 2 Fetch NOT_LEADER_FOR_PARTITION 100 0 0"
check "error-count sees the broker's pushed errors" expect "ok 2" \
  "error-count 2 Fetch"
check "error-count of another broker" expect "ok 0" "error-count 1 Fetch"
check "coordinator" expect "ok transaction my-txn -> broker 2" \
  "coordinator transaction my-txn 2"
check "clear-errors" expect "ok cleared ApiKey 26" "clear-errors EndTxn"
check "clear-errors 24" expect "ok cleared ApiKey 24" "clear-errors 24"
for badcmd in "" "frobnicate" "ping extra" "broker-down" "broker-down 3" \
    "broker-up 0" "broker-down x" "rtt 1" "rtt 1 -5" "rtt all 99999999" \
    "push-errors Produce" "push-errors NoSuchApi 1" "push-errors 0 -1" \
    "push-errors 0 NO_SUCH_ERROR" "push-errors 0 99999" \
    "push-broker-errors all Produce 1 0" "push-broker-errors 1 Produce 1" \
    "push-broker-errors 1 Produce 1 x" "clear-errors" \
    "error-count all Produce" "error-count 1" "error-count 1 Nope" \
    "coordinator producer x 1" "coordinator group g 9" \
    "push-errors 0 $(printf '1 %.0s' $(seq 70))"; do
  check "bad command '${badcmd:0:40}' gets an error line" \
    expect "error " "$badcmd"
done
check "overlong line gets an error line" \
  expect "error line too long" "$(head -c 3000 /dev/zero | tr '\0' a)"
check "still serving after bad input" expect "ok pong" "ping"
exec 3>&-
# A client that goes away mid-line does not stop the server.
exec 3<>"/dev/tcp/127.0.0.1/$cport"; printf 'broker-do' >&3; exec 3>&-
ctl_open
check "a new client after an abrupt one" expect "ok pong" "ping"

# The faults reach a real client.
check "push Produce TOPIC_AUTHORIZATION_FAILED" \
  expect "ok 1 error(s)" "push-errors Produce TOPIC_AUTHORIZATION_FAILED"
echo x | timeout $((30 * mult)) kcat -P -b "$bs" -t ctl.t -X retries=0 \
  >"$tmp/kcat.out" 2>&1
check "kcat's produce fails with it" \
  grep -q "Topic authorization failed" "$tmp/kcat.out"
echo y | timeout $((30 * mult)) kcat -P -b "$bs" -t ctl.t -X retries=0 \
  >"$tmp/kcat.out" 2>&1
check "the next produce succeeds (one error pushed, one consumed)" test $? -eq 0
check "broker-down all" expect "ok 2 broker(s)" "broker-down all"
timeout $((30 * mult)) kcat -L -b "$bs" -m 3 >/dev/null 2>&1
check "kcat -L fails while every broker is down" test $? -ne 0
check "broker-up all" expect "ok 2 broker(s)" "broker-up all"
timeout $((30 * mult)) kcat -L -b "$bs" -m 10 >"$tmp/meta3" 2>&1
check "kcat -L works again" grep -q " 2 brokers:" "$tmp/meta3"
exec 3>&-
check "commands are logged on stderr" \
  grep -q "control: push-errors Produce TOPIC_AUTHORIZATION_FAILED -> ok" \
  "$tmp/err3"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=""
check "SIGTERM with the control port exits 0" test "$rc" -eq 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
