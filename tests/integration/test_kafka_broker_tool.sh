#!/usr/bin/env bash
# The test broker tool itself (tests/kafka/broker): a start whose port is
# taken between choosing it and binding it (another process on a busy
# machine) starts again on new ports, and never reports another process's
# listener as its broker.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

if [ -n "${EB_TEST_BROKERS:-}" ]; then
  echo "skipped: EB_TEST_BROKERS names an existing cluster"
  ok "skipped on an existing cluster"
  finish
  exit $?
fi

# A listener that holds the port the first attempt will use, and answers
# nothing: the broker on it fails with BindException.
"$PY" - "$T/taken" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
c = socket.socket()
c.bind(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write("%d %d\n" % (s.getsockname()[1],
                                                   c.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
PY
PIDS+=($!)
wait_for "the port holder" 10 test -s "$T/taken"
read -r held ctl <"$T/taken"

KAFKA_DIR=$T/kafka
EB_BROKER_FIRST_PORTS="$held $ctl" tests/kafka/broker start "$KAFKA_DIR" \
  >"$T/bootstrap" 2>"$T/start.err"
rc=$?
cat "$T/start.err"
check "the start succeeds although its first port was taken" test "$rc" -eq 0
check "it says why it started again" \
  grep -q 'a port was taken while it started; again on new ports' "$T/start.err"
bs=$(cat "$T/bootstrap")
check "the bootstrap address is not the taken port ($bs)" \
  test -n "$bs" -a "$bs" != "127.0.0.1:$held"
check "the broker answers there" sh -c \
  "kcat -b '$bs' -L -m 10 2>/dev/null | grep -q 'broker 1 at'"
finish
