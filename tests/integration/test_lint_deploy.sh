#!/usr/bin/env bash
# tools/lint-deploy.js with the real tools: the kustomize overlays and the
# Helm chart's examples pass and agree; deliberately bad manifests and
# chart values fail, each for the reason named (a wrong field, a wrong
# type, a missing probe, a chart value outside values.schema.json, ...).
#
# Needs node, tools/node_modules (npm ci in tools/) and the pinned kustomize,
# helm and tools/k8scheck that `make deploy-tools` builds into a cache (go
# is enough; the first build takes a few minutes). Without them this test
# fails in CI (CI=true) and is skipped, saying so, elsewhere.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

FIX=tests/fixtures/deploy

skip_or_fail() {
  if [ "${CI:-}" = true ]; then bad "$1"; finish; exit 1; fi
  echo "SKIP: $1"; finish; exit 0
}
command -v node > /dev/null 2>&1 || skip_or_fail "node is not installed"
command -v go > /dev/null 2>&1 || skip_or_fail "go is not installed"
if [ ! -d tools/node_modules/yaml ]; then
  (cd tools && npm ci --ignore-scripts --no-audit --no-fund) \
    > "$T/npm.log" 2>&1 || { cat "$T/npm.log"; skip_or_fail \
    "tools/node_modules missing and npm ci failed"; }
fi
# --kustomize BIN --helm BIN --k8scheck OLDEST --k8scheck NEWEST
TOOLS=$(make -s deploy-tools-args 2> "$T/tools.log" | tail -1)
case "$TOOLS" in
  --kustomize*) ;;
  *) cat "$T/tools.log"; skip_or_fail "make deploy-tools failed" ;;
esac
read -r -a TOOLS <<< "$TOOLS"
KUSTOMIZE=${TOOLS[1]}
HELM=${TOOLS[3]}
LINT=(node tools/lint-deploy.js "${TOOLS[@]}")

# lint FILE-OR-DIR... > $T/out; returns the linter's status
lint_status() { "${LINT[@]}" "$@" > "$T/out" 2>&1; }
said() { grep -qF -- "$1" "$T/out" || { echo "  missing: $1"; cat "$T/out"; return 1; }; }
# the reasons given for one object: said_for "OBJECT LINE" "REASON"
said_for() {
  awk -v o="$1" '$0 == "FAIL " o {p=1; next} /^(OK|FAIL) / {p=0} p' "$T/out" \
    | grep -qF -- "$2" || { echo "  missing for $1: $2"; cat "$T/out"; return 1; }
}

# ---- the real manifests -------------------------------------------------
EVB=()
[ -x "$B/bin/evbridge" ] && EVB=(--evbridge "$B/bin/evbridge")
lint_status "${EVB[@]}"; rc=$?
check "real overlays and chart examples pass (rc=$rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$T/out"
check "both Kubernetes releases used" said "schemas of Kubernetes 1.32 and 1.37"
for d in deploy/k8s/base deploy/k8s/overlays/*/; do
  d=${d%/}
  check "$d rendered and checked" said "$d: "
done
for f in deploy/helm/evbridge/examples/*.yaml; do
  check "chart -f $f rendered and checked" said "deploy/helm/evbridge -f $f: "
done
for o in dev prod scaled; do
  check "chart and overlay $o agree" \
    said "OK   drift: chart -f examples/$o.yaml vs overlays/$o: same Deployment, Service, config"
done
check "every object reported OK" bash -c "! grep -q '^FAIL' '$T/out'"
check "overlays render the Deployment into their namespaces" \
  bash -c "grep -q '^OK   apps/v1 Deployment evbridge-dev/evbridge' '$T/out' &&
           grep -q '^OK   apps/v1 Deployment evbridge/evbridge' '$T/out'"
check "the scaled chart example renders one intake partition per shard" \
  bash -c "'$HELM' template evbridge deploy/helm/evbridge \
    -f deploy/helm/evbridge/examples/scaled.yaml | grep -A4 'topicName: evbridge.intake' | grep -q 'partitions: 12'"
check "the scaled chart example renders state topics partitioned by shard" \
  bash -c "'$HELM' template evbridge deploy/helm/evbridge \
    -f deploy/helm/evbridge/examples/scaled.yaml | grep -A1 'topicName: evbridge.seen' | grep -q 'partitions: 13'"

# No image anywhere in the rendered manifests is :latest or untagged.
for d in deploy/k8s/overlays/*/; do
  "$KUSTOMIZE" build "$d" > "$T/render.yaml" 2> "$T/render.err"
  check "kustomize renders $d" test -s "$T/render.yaml"
  check "$d: every image pinned" bash -c \
    "grep -E '^ *(- )?image:' '$T/render.yaml' | grep -vE ':[0-9][A-Za-z0-9._-]*$' | \
     { ! grep -q .; }"
done

# ---- deliberately bad ----------------------------------------------------
lint_status --file "$FIX/bad-pod.yaml"; rc=$?
check "bad pod: rejected (rc=$rc)" test "$rc" -eq 1
check "bad pod: root user named" said "runAsUser is 0 (root)"
check "bad pod: runAsNonRoot named" said "runAsNonRoot must be true"
check "bad pod: :latest named" said 'uses :latest'
check "bad pod: untagged image named" said 'has no tag'
check "bad pod: missing readiness probe named" \
  said_for "apps/v1 Deployment bad" "containers[app]: readinessProbe missing"
check "bad pod: missing limits named" said "resources.limits.memory missing"
check "bad pod: writable root filesystem named" \
  said "readOnlyRootFilesystem must be true"

lint_status --file "$FIX/bad-schema.yaml"; rc=$?
check "bad schema: rejected (rc=$rc)" test "$rc" -eq 1
check "bad schema: wrong type" said_for "v1 Service wrong-type" \
  "schema: spec.ports.port: wrong type: expected int32, got string"
check "bad schema: unknown field (typo)" said_for "v1 Service typo" \
  'schema: unknown field "spec.ports[0].targetport"'
check "bad schema: invalid name" said_for "policy/v1 PodDisruptionBudget Bad_Name" \
  'metadata.name: Invalid value: "Bad_Name"'
check "bad schema: PDB blocking drains" said "maxUnavailable 0 blocks"
check "bad schema: a field only the newer release has" said_for "v1 Pod too-new" \
  'schema (Kubernetes 1.32): unknown field "spec.hostnameOverride"'
check "bad schema: unknown kind is a failure" said "no schema known for example.com/v1 Widget"
check "bad schema: Strimzi CRD enum" said_for "kafka.strimzi.io/v1 KafkaUser user" \
  'operations[1]: Unsupported value: "Fly"'
check "bad schema: Strimzi cluster label" said 'strimzi.io/cluster'
check "bad schema: Strimzi CEL rule" said_for "kafka.strimzi.io/v1 KafkaUser cel-user" \
  "can be configured only with 'type: tls'"
check "bad schema: ServiceMonitor typo" said_for "monitoring.coreos.com/v1 ServiceMonitor sm" \
  "spec.endpoints[0].intervall: unknown field"
check "bad schema: every object failed" said "8 object(s) checked, 8 failed"

lint_status --chart-values "$FIX/bad-values.yaml"; rc=$?
check "bad chart values: rejected (rc=$rc)" test "$rc" -eq 1
check "bad chart values: wrong type" said "values: at '/replicaCount': got string, want integer"
check "bad chart values: enum" said "values: at '/kafka/securityProtocol': value must be one of"
check "bad chart values: :latest" said "values: at '/image/tag': 'not' failed"
check "bad chart values: missing probe" said "values: at '/probes': missing property 'readiness'"
check "bad chart values: unknown key" said "additional properties 'enabld' not allowed"
check "bad chart values: PDB blocking drains" \
  said "values: at '/podDisruptionBudget/maxUnavailable': minimum: got 0, want 1"
"$HELM" template evbridge deploy/helm/evbridge -f "$FIX/bad-values.yaml" \
  > "$T/out" 2>&1; rc=$?
check "bad chart values: helm template refuses them too (rc=$rc)" test "$rc" -ne 0
check "bad chart values: helm template names the schema" \
  said "values don't meet the specifications of the schema"

lint_status --chart-values "$FIX/bad-values-unsharded.yaml"; rc=$?
check "chart replicas without shards: rejected (rc=$rc)" test "$rc" -eq 1
check "chart replicas without shards: named" \
  said "replicaCount 3 needs config.scale.shards"

lint_status "${EVB[@]}" "$FIX/bad-config"; rc=$?
check "bad config: rejected (rc=$rc)" test "$rc" -eq 1
check "bad config: unmounted secret" said "is not under any volume mount"
check "bad config: grace period shorter than the drain" \
  said "terminationGracePeriodSeconds 10 must exceed"
check "bad config: listen port not exposed" said "port 9090 is not a containerPort"
check "bad config: memory below the dedupe table" said "dedupe table(s) of dedupe.capacity"
check "bad config: seen retention below the window" \
  said "shorter than dedupe.window"
if [ ${#EVB[@]} -gt 0 ]; then
  check "bad config: evbridge --check-config names the key" \
    said 'sources[0].poll.interval: expected a duration'
fi

lint_status "$FIX/bad-scale-unsharded"; rc=$?
check "replicas without shards: rejected (rc=$rc)" test "$rc" -eq 1
check "replicas without shards: named" \
  said "spec.replicas: at most 1 without scale.shards"
lint_status "$FIX/bad-scale-topics"; rc=$?
check "sharded misfit: rejected (rc=$rc)" test "$rc" -eq 1
check "sharded misfit: more replicas than shards" \
  said "spec.replicas 5 exceeds scale.shards 4"
check "sharded misfit: intake partitions differ from the shards" \
  said "KafkaTopic evbridge.intake has 2 partition(s); scale.shards is 4"
check "sharded misfit: state topic neither partitioned by shard nor 1" \
  said "KafkaTopic evbridge.seen has 4 partition(s); with scale.shards 4 a state topic has 5"
check "sharded misfit: the one-partition checkpoints topic is accepted" \
  bash -c "! grep -q 'KafkaTopic evbridge.checkpoints has' '$T/out'"

lint_status "$FIX/bad-kustomization"; rc=$?
check "kustomization kustomize refuses: rejected (rc=$rc)" test "$rc" -eq 1
check "kustomization kustomize refuses: named" \
  said "cannot render: kustomize build: Error: accumulating resources"

# ---- drift between the chart and an overlay is caught -----------------------
# A copy of the repository's deploy/ and tools/ whose prod overlay asks for
# more memory than the chart's examples/prod.yaml.
mkdir -p "$T/repo"
cp -r deploy tools "$T/repo/"
sed -i "s/memory: 576Mi/memory: 2Gi/" "$T/repo/deploy/k8s/overlays/prod/deployment-resources.yaml"
(cd "$T/repo" && node tools/lint-deploy.js "${TOOLS[@]}") > "$T/out" 2>&1; rc=$?
check "drift: rejected (rc=$rc)" test "$rc" -eq 1
check "drift: the differing field named" said_for \
  "drift: chart -f examples/prod.yaml vs overlays/prod" \
  'Deployment.spec.template.spec.containers[0].resources.limits.memory: chart "576Mi", overlay "2Gi"'
finish
