#!/usr/bin/env bash
# Topics and permissions on a real broker that creates no topic by itself
# (auto.create.topics.enable=false) and authorizes every request (SASL
# PLAIN users, the StandardAuthorizer, no ACL means no access), as a
# locked-down production cluster does:
#
#   1. a principal without CREATE: evbridge says at once which state
#      topic it cannot create, the missing permission and how to create
#      the topics by hand, and keeps retrying;
#   2. a wrong password: the start-up log names the SASL failure;
#   3. once granted what docs/operations.md lists, evbridge creates its
#      state topics itself, with the configs it documents (read back
#      with Kafka's own ConfigCommand);
#   4. an event topic that does not exist: the delivery error names it
#      and nothing is committed; once it is created as docs/operations.md
#      says, every event arrives exactly once (kcat, read_committed).
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

start_kafka --own --sasl --no-auto-create || { bad "kafka start"; finish; exit 1; }
start_sim --seed 5 --accounts kota=1 --backlog 30 --backlog-span 1h --rate 0 \
  --limits off || { bad "sim start"; finish; exit 1; }

cfg() { # cfg USER PASSWORD > config
  $PY tests/tools/sim_config.py --sim-line "$T/sim.out" --brokers "$BS" \
    --interval 1s --start 1d --kafka-prop security.protocol=SASL_PLAINTEXT \
    --kafka-prop sasl.mechanisms=PLAIN --kafka-prop "sasl.username=$1" \
    --kafka-prop "sasl.password=$2" --kafka-prop message.timeout.ms=8000
}
cfg alice alice-secret > "$T/cfg.json"
cfg alice wrong-secret > "$T/bad.json"
acl() { kafka_ctl_admin acls --add --allow-principal User:alice "$@" >/dev/null 2>&1; }
kafka_ctl_admin() { tests/kafka/broker admin "$KAFKA_DIR" "$@"; }

# ---- 1. no CREATE --------------------------------------------------------
# A permission can be granted while evbridge runs: it keeps retrying, not
# ready, and says at once what is missing.
(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/noacl.log" 2>&1) &
NOACL_PID=$!
PIDS+=($NOACL_PID)
named() { grep -q "state topic evbridge.checkpoints: cannot create it: .*AUTHORIZATION_FAILED" "$T/noacl.log"; }
check "1: without CREATE the log names the state topic and the authorization failure" \
  wait_for "authorization error" 20 named
echo "  no ACLs: $(grep -m1 'AUTHORIZATION_FAILED' "$T/noacl.log" | cut -c1-240)"
check "1: the error says which permission to grant and how to create by hand" \
  grep -q "grant it CREATE on the cluster.*--config cleanup.policy=compact" "$T/noacl.log"
check "1: evbridge keeps retrying (a grant may come)" kill -0 $NOACL_PID
stop_pid $NOACL_PID; rc=$?
check "1: and stops cleanly on SIGTERM ($rc)" test "$rc" -eq 0

# ---- 2. a wrong password -------------------------------------------------
timeout $((60 * MULT)) "$B/bin/evbridge" --config "$T/bad.json" > "$T/badpw.log" 2>&1
rc=$?
echo "  wrong password: exit $rc: $(grep -m1 'SASL' "$T/badpw.log" | cut -c1-240)"
check "2: a wrong password stops evbridge" test "$rc" -ne 0 -a "$rc" -ne 124
check "2: the log names the SASL authentication failure" \
  grep -q "SASL authentication error: Authentication failed" "$T/badpw.log"
check "2: the password is not logged" bash -c "! grep -q wrong-secret '$T/badpw.log'"

# ---- 3. granted: evbridge creates its state topics ----------------------
# What docs/operations.md ("Kafka permissions") lists for state_prefix
# "evbridge", topic_prefix "crm" and transactional.id "evbridge-main".
acl --operation Create --operation Describe --operation Write --operation Read \
  --operation DescribeConfigs --resource-pattern-type prefixed --topic evbridge.
acl --operation Describe --operation Write --resource-pattern-type prefixed --topic crm.
acl --operation Describe --operation Write --transactional-id evbridge-main
acl --operation IdempotentWrite --cluster
n=$(kafka_ctl_admin acls --list 2>/dev/null | grep -c "User:alice")
check "3: ACLs granted ($n)" test "$n" -ge 9

(exec "$B/bin/evbridge" --config "$T/cfg.json" > "$T/evbridge.log" 2>&1) &
EB_PID=$!
PIDS+=($EB_PID)
ready() { grep -q "state restored: ready" "$T/evbridge.log"; }
check "3: evbridge ready with the grants" wait_for "evbridge ready" 60 ready
check "3: evbridge created evbridge.checkpoints" \
  grep -q "created state topic evbridge.checkpoints" "$T/evbridge.log"
kafka_ctl_admin configs --describe --entity-type topics \
  --entity-name evbridge.checkpoints > "$T/cp.cfg" 2>&1
kafka_ctl_admin configs --describe --entity-type topics \
  --entity-name evbridge.seen > "$T/seen.cfg" 2>&1
echo "  checkpoints: $(grep -o 'cleanup.policy=[a-z]*' "$T/cp.cfg" | head -1)," \
  "seen: $(grep -o 'retention.ms=[0-9]*' "$T/seen.cfg" | head -1)"
check "3: evbridge.checkpoints is compacted" \
  grep -q "cleanup.policy=compact" "$T/cp.cfg"
check "3: evbridge.seen keeps records for 96 h (the 72 h dedupe window + 24 h)" \
  grep -q "retention.ms=345600000" "$T/seen.cfg"

# ---- 4. event topics must exist ------------------------------------------
missing() { grep -q "delivery failed topic=crm\..*UNKNOWN_TOPIC_OR_PART" "$T/evbridge.log"; }
check "4: a missing event topic is named in a delivery error" \
  wait_for "delivery error" 60 missing
ADMIN_PROPS="--kafka-prop security.protocol=SASL_PLAINTEXT --kafka-prop sasl.mechanisms=PLAIN --kafka-prop sasl.username=admin --kafka-prop sasl.password=admin-secret"
truth() { # exactly once against the simulator's truth, read_committed
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  # shellcheck disable=SC2086
  $PY tests/tools/truth_check.py --bootstrap "$BS" --truth "$T/truth.jsonl" \
    $ADMIN_PROPS --quiet --timeout 20 > "$T/check.json" 2>&1
}
msgs() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$T/check.json"; }
truth
check "4: nothing committed while the topics are missing ($(msgs))" \
  test "$(msgs)" = 0
# create_topics: what an operator does from docs/operations.md ("Event
# topics"): create the topic of every event type the sources produce
# (here: derived from the simulator's truth, as truth_check.py derives
# each event's topic), with the Admin API as the super user.
create_topics() {
  curl -s -f -X POST -d '{"target":"all","dump":true}' "$SIM_CTL" >/dev/null
  $PY - "$BS" "$T/truth.jsonl" "$T/created" <<'PY'
import json, sys
sys.path.insert(0, "tests/tools")
from truth_check import expect, topic_for
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1],
                 "security.protocol": "SASL_PLAINTEXT",
                 "sasl.mechanisms": "PLAIN", "sasl.username": "admin",
                 "sasl.password": "admin-secret"})
names = set()
for line in open(sys.argv[2]):
    if line.strip():
        ev = json.loads(line)
        entity, action = expect(ev)[:2]
        names.add(topic_for("crm", ev["provider"], entity, action))
have = set(a.list_topics(timeout=10).topics)
new = sorted(n for n in names if n not in have)
for n, f in a.create_topics([NewTopic(n, 3, 1) for n in new]).items():
    f.result()
with open(sys.argv[3], "a") as out:
    for n in new:
        out.write(n + "\n")
PY
}
touch "$T/created"
create_topics
named=$(grep -Eo "(delivery failed|produce refused) topic=crm\.[a-z0-9.-]*" \
  "$T/evbridge.log" | sed 's/.*topic=//' | sort -u)
check "4: the topics named in the errors are among those created" \
  bash -c "for t in $(echo $named); do grep -qx \"\$t\" '$T/created' || exit 1; done"
all_in() { truth; }
check "4: every event arrives exactly once once the topics exist" \
  wait_for "all events" $((180 * MULT)) all_in
echo "  created $(grep -c . "$T/created") event topic(s) by hand; $(head -c 300 "$T/check.json")"
stop_pid $EB_PID; rc=$?
check "evbridge exits 0 on SIGTERM" test "$rc" -eq 0
finish
