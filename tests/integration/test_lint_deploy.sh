#!/usr/bin/env bash
# tools/lint-deploy.js: the real kustomize overlays pass; deliberately bad
# manifests (root user, :latest, missing probe, schema errors, a broken
# evbridge config, an unsupported kustomize feature) fail, each problem
# named. Where kubectl is installed, tools/kustomize-lite.js must render
# every overlay exactly as `kubectl kustomize` does.
#
# Needs tools/node_modules (npm ci in tools/, as .ci/run does). Without
# node or the modules this test fails in CI (CI=true) and is skipped,
# saying so, elsewhere.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

LINT=(node tools/lint-deploy.js)
FIX=tests/fixtures/deploy

skip_or_fail() {
  if [ "${CI:-}" = true ]; then bad "$1"; finish; exit 1; fi
  echo "SKIP: $1"; finish; exit 0
}
command -v node > /dev/null 2>&1 || skip_or_fail "node is not installed"
if [ ! -d tools/node_modules/kubernetes-models ]; then
  (cd tools && npm ci --ignore-scripts --no-audit --no-fund) \
    > "$T/npm.log" 2>&1 || { cat "$T/npm.log"; skip_or_fail \
    "tools/node_modules missing and npm ci failed"; }
fi

# lint FILE-OR-DIR... > $T/out; returns the linter's status
lint_status() { "${LINT[@]}" "$@" > "$T/out" 2>&1; }
said() { grep -qF -- "$1" "$T/out" || { echo "  missing: $1"; cat "$T/out"; return 1; }; }

# ---- the real manifests -------------------------------------------------
EVB=()
[ -x "$B/bin/evbridge" ] && EVB=(--evbridge "$B/bin/evbridge")
lint_status "${EVB[@]}"; rc=$?
check "real base and overlays pass (rc=$rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$T/out"
for d in deploy/k8s/base deploy/k8s/overlays/*/; do
  d=${d%/}
  check "$d rendered and checked" said "$d: "
done
check "every object reported OK" bash -c "! grep -q '^FAIL' '$T/out'"
check "overlays render the Deployment into their namespaces" \
  bash -c "grep -q '^OK   apps/v1 Deployment evbridge-dev/evbridge' '$T/out' &&
           grep -q '^OK   apps/v1 Deployment evbridge/evbridge' '$T/out'"

# No image anywhere in the rendered manifests is :latest or untagged.
for d in deploy/k8s/overlays/*/; do
  node tools/kustomize-lite.js "$d" > "$T/render.yaml" 2> "$T/render.err"
  check "kustomize-lite renders $d" test -s "$T/render.yaml"
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
  said "containers[app]: readinessProbe missing"
check "bad pod: missing limits named" said "resources.limits.memory missing"
check "bad pod: writable root filesystem named" \
  said "readOnlyRootFilesystem must be true"

lint_status --file "$FIX/bad-schema.yaml"; rc=$?
check "bad schema: rejected (rc=$rc)" test "$rc" -eq 1
check "bad schema: wrong type" said "spec.ports[0].port must be integer"
check "bad schema: unknown field (typo)" \
  said "spec.ports[0].targetport: unknown field"
check "bad schema: invalid name" said '"Bad_Name" is not a DNS-1123'
check "bad schema: PDB blocking drains" said "maxUnavailable 0 blocks"
check "bad schema: unknown kind is a failure" said "no schema known for"
check "bad schema: Strimzi user checks" said 'operations: unknown "Fly"'
check "bad schema: Strimzi cluster label" said 'strimzi.io/cluster'
check "bad schema: ServiceMonitor typo" \
  said "spec.endpoints[0].intervall: unknown field"
check "bad schema: every object failed" said "5 object(s) checked, 5 failed"

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

lint_status "$FIX/unsupported"; rc=$?
check "unsupported kustomize field: refused (rc=$rc)" test "$rc" -eq 1
check "unsupported kustomize field: named" \
  said '"replicas" is not supported by kustomize-lite'

# ---- kustomize-lite == kustomize ------------------------------------------
if command -v kubectl > /dev/null 2>&1 && kubectl kustomize --help \
     > /dev/null 2>&1; then
  for d in deploy/k8s/base deploy/k8s/overlays/*/ "$FIX/bad-config" \
           "$FIX/kustomize-features"; do
    d=${d%/}
    kubectl kustomize "$d" > "$T/ref.yaml" 2> "$T/ref.err"
    node - "$d" "$T/ref.yaml" > "$T/cmp.out" 2>&1 <<'JS'
const fs = require('fs');
const util = require('util');
const YAML = require(process.cwd() + '/tools/node_modules/yaml');
const { build } = require(process.cwd() + '/tools/kustomize-lite.js');
const [dir, refFile] = process.argv.slice(2);
const key = (r) => `${r.apiVersion} ${r.kind} ${r.metadata.namespace || ''}/` +
  r.metadata.name;
const ref = new Map(YAML.parseAllDocuments(fs.readFileSync(refFile, 'utf8'))
  .map((d) => d.toJS()).filter(Boolean).map((r) => [key(r), r]));
const mine = new Map(build(dir).map((r) => [key(r), r]));
let same = ref.size > 0;
for (const k of new Set([...ref.keys(), ...mine.keys()]))
  if (!util.isDeepStrictEqual(ref.get(k), mine.get(k))) {
    same = false;
    console.log(`differs: ${k}`);
  }
process.exit(same ? 0 : 1);
JS
    rc=$?
    check "kustomize-lite renders $d exactly as kubectl kustomize" \
      test "$rc" -eq 0
    [ "$rc" -eq 0 ] || cat "$T/cmp.out" "$T/ref.err"
  done
else
  echo "note: kubectl not installed; kustomize-lite not compared with it"
fi
finish
