#!/usr/bin/env bash
# Docs agree with the code (issue 19): every key and default in
# docs/configuration.md, and the provider defaults there and in
# docs/providers.md, against `evbridge --print-defaults`, which prints
# them from the parser's own tables. A mutated copy of the page must fail,
# so the check cannot pass by checking nothing.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

"$B/bin/evbridge" --print-defaults > "$T/defaults.tsv"
check "--print-defaults exits 0" test $? -eq 0
check "--print-defaults lists keys of every section" sh -c \
  "grep -q '^kafka.batch.linger' '$T/defaults.tsv' && grep -q '^sources\[\].poll.interval' '$T/defaults.tsv' && grep -q '^scale.shards' '$T/defaults.tsv' && grep -q '^provider.kommo.rate_limit.rps' '$T/defaults.tsv'"
$PY tests/tools/docs_defaults.py "$T/defaults.tsv" docs/configuration.md \
  docs/providers.md > "$T/diff.txt"
rc=$?
cat "$T/diff.txt"
check "docs/configuration.md and docs/providers.md agree with the code" \
  test "$rc" -eq 0

# The checker sees a wrong default, a missing key and a wrong rate limit.
sed 's/| `poll.interval` | duration 100ms..24h | `"10s"` |/| `poll.interval` | duration 100ms..24h | `"15s"` |/' \
  docs/configuration.md > "$T/wrong-default.md"
$PY tests/tools/docs_defaults.py "$T/defaults.tsv" "$T/wrong-default.md" \
  docs/providers.md > "$T/out1.txt"
check "a wrong default is caught" grep -q 'sources\[\].poll.interval. default' "$T/out1.txt"
grep -v '^| `max_held` |' docs/configuration.md > "$T/missing-key.md"
$PY tests/tools/docs_defaults.py "$T/defaults.tsv" "$T/missing-key.md" \
  docs/providers.md > "$T/out2.txt"
check "an undocumented key is caught" grep -q 'http.max_held. is not documented' "$T/out2.txt"
sed 's/| 6 rps, burst 1 |/| 5 rps, burst 5 |/' docs/providers.md > "$T/providers.md"
$PY tests/tools/docs_defaults.py "$T/defaults.tsv" docs/configuration.md \
  "$T/providers.md" > "$T/out3.txt"
check "a wrong provider rate limit is caught" grep -q 'rate_limit. default for kommo' "$T/out3.txt"
finish
