#!/usr/bin/env bash
# evbridge --check-config: every broken fixture is rejected with exit 2 and
# a message naming the offending key; valid ones pass with exit 0; the
# other command-line entry points behave.
set -u
bin="${EB_BUILD_DIR:-build/release}/bin/evbridge"
dir=tests/fixtures/config
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

unset EVBRIDGE_TEST_UNSET_VAR_4242
while IFS=$'\t' read -r file want; do
  [ -n "$file" ] || continue
  out=$("$bin" --check-config "$dir/$file" 2>&1)
  rc=$?
  if [ "$rc" -ne 2 ]; then
    bad "$file: exit $rc, want 2 ($out)"
  elif [[ "$out" != *"$want"* ]]; then
    bad "$file: message does not name '$want': $out"
  else
    ok
  fi
done < "$dir/bad-cases.txt"

out=$("$bin" --check-config "$dir/valid-full.json" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then ok; else bad "valid-full.json: exit $rc: $out"; fi

# Kommo OAuth credentials instead of a token; no OAuth secret is echoed
# by a refusal.
out=$("$bin" --check-config "$dir/valid-oauth.json" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then ok; else bad "valid-oauth.json: exit $rc: $out"; fi
while IFS='|' read -r f want; do
  out=$("$bin" --check-config "$dir/$f.json" 2>&1)
  rc=$?
  if [ "$rc" -ne 2 ]; then
    bad "$f: exit $rc, want 2 ($out)"
  elif [[ "$out" != *"$want"* ]]; then
    bad "$f: message does not name '$want': $out"
  elif [[ "$out" == *oauth-client-secret-xyz* || "$out" == *def50200* ||
          "$out" == *not-hex-key-value* || "$out" == *long-lived-xyz* ]]; then
    bad "$f: a secret in the message: $out"
  else
    ok
  fi
done <<'CASES'
oauth-bad-both|sources[0].credentials: give either "token" (a long-lived token) or the OAuth keys
oauth-bad-missing|sources[0].credentials.refresh_token: required with OAuth
oauth-bad-key|sources[0].credentials.token_key: expected 64 hex digits
oauth-bad-alo|sources[0].credentials: Kommo OAuth needs kafka.delivery "exactly-once"
oauth-bad-provider|sources[0].credentials: OAuth credentials (client_id, client_secret, redirect_uri, refresh_token, token_key) are for provider kommo only
CASES

# A secret in a config never appears in what --check-config prints, even
# when the config is broken right next to it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/secret.json" <<'JSON'
{"sources":[{"name":"s1","provider":"close",
  "credentials":{"api_key":"topsecret-key-123"},
  "poll":{"interval":"often"}}]}
JSON
out=$("$bin" --check-config "$tmp/secret.json" 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"sources[0].poll.interval"* ]] &&
   [[ "$out" != *"topsecret"* ]]; then ok; else bad "secret case: rc=$rc $out"; fi

# Unknown provider is caught by the adapters' check, with the key.
cat > "$tmp/prov.json" <<'JSON'
{"sources":[{"name":"s1","provider":"salesforce",
  "credentials":{"api_key":"k-123456"}}]}
JSON
out=$("$bin" --check-config "$tmp/prov.json" 2>&1)
rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"sources[0].provider"* ]]; then ok;
else bad "unknown provider: rc=$rc $out"; fi

out=$("$bin" --version 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [[ "$out" == evbridge* ]]; then ok; else bad "--version: $out"; fi
out=$("$bin" --help 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [[ "$out" == *"--check-config"* ]]; then ok; else bad "--help"; fi
"$bin" --no-such-flag >/dev/null 2>&1; rc=$?
if [ "$rc" -eq 2 ]; then ok; else bad "bad flag exit $rc"; fi
out=$("$bin" --check-config /nonexistent/evbridge.json 2>&1); rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"/nonexistent/evbridge.json"* ]]; then ok;
else bad "missing file: rc=$rc $out"; fi

# Secrets absent (issue 19): the check names the file and suggests
# --shape-only, which checks the rest with placeholders and says so.
cat > "$tmp/mounted.json" <<'JSON'
{"kafka":{"brokers":"k:9092","properties":{"sasl.password":"${file:/nonexistent/eb-test/kafka-password}"}},
 "sources":[{"name":"c1","provider":"close",
  "credentials":{"api_key":"${file:/nonexistent/eb-test/close-key}"},
  "webhook":{"secret":"${file:/nonexistent/eb-test/close-hook}"}}]}
JSON
out=$("$bin" --check-config "$tmp/mounted.json" 2>&1); rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"/nonexistent/eb-test/kafka-password"* ]] &&
   [[ "$out" == *"--shape-only"* ]]; then ok; else bad "absent secret: rc=$rc $out"; fi
out=$("$bin" --check-config "$tmp/mounted.json" --shape-only 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [[ "$out" == *"shape only: 3 secret file(s) absent"* ]]; then ok;
else bad "--shape-only: rc=$rc $out"; fi
for f in deploy/k8s/base/evbridge.json deploy/k8s/overlays/*/evbridge.json; do
  [ -f "$f" ] || continue
  out=$("$bin" --check-config "$f" --shape-only 2>&1); rc=$?
  if [ "$rc" -eq 0 ]; then ok; else bad "--shape-only $f: rc=$rc $out"; fi
done
sed 's/"name":"c1"/"name":"c1","poll":{"interval":"often"}/' "$tmp/mounted.json" \
  > "$tmp/mounted-bad.json"
out=$("$bin" --check-config "$tmp/mounted-bad.json" --shape-only 2>&1); rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"sources[0].poll.interval"* ]]; then ok;
else bad "--shape-only still checks the shape: rc=$rc $out"; fi
"$bin" --shape-only >/dev/null 2>&1; rc=$?
if [ "$rc" -eq 2 ]; then ok; else bad "--shape-only alone: exit $rc"; fi

# Two sources on one account are refused, naming both; a disabled twin is
# not counted and not refused.
cat > "$tmp/twins.json" <<'JSON'
{"sources":[
 {"name":"kommo-a","provider":"kommo","base_url":"https://acme.kommo.com",
  "credentials":{"token":"twin-token-1"}},
 {"name":"close-a","provider":"close","credentials":{"api_key":"k-1"}},
 {"name":"kommo-b","provider":"kommo","base_url":"https://ACME.kommo.com/",
  "credentials":{"token":"twin-token-1"}}]}
JSON
out=$("$bin" --check-config "$tmp/twins.json" 2>&1); rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *'sources[0] "kommo-a"'* ]] &&
   [[ "$out" == *'sources[2] "kommo-b"'* ]] && [[ "$out" != *twin-token* ]]; then ok;
else bad "same account twice: rc=$rc $out"; fi
sed 's/"name":"kommo-b",/"name":"kommo-b","enabled":false,/' "$tmp/twins.json" \
  > "$tmp/twin-off.json"
out=$("$bin" --check-config "$tmp/twin-off.json" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [[ "$out" == *"ok (2 source(s), 1 disabled)"* ]]; then ok;
else bad "disabled twin: rc=$rc $out"; fi
# Close serves every account at one URL; the API key is the account.
cat > "$tmp/two-accounts.json" <<'JSON'
{"sources":[
 {"name":"close-a","provider":"close","credentials":{"api_key":"k-1"}},
 {"name":"close-b","provider":"close","credentials":{"api_key":"k-2"}}]}
JSON
out=$("$bin" --check-config "$tmp/two-accounts.json" 2>&1); rc=$?
if [ "$rc" -eq 0 ]; then ok; else bad "two accounts on one URL: rc=$rc $out"; fi

# Kommo allows 7 requests per second per account and bans the address
# after repeated 429s: a rate_limit that can exceed it is refused, alone or
# added up over the sources that poll one account.
for f in rate-kommo-too-fast rate-kommo-shared-account; do
  out=$("$bin" --check-config "$dir/$f.json" 2>&1)
  rc=$?
  if [ "$rc" -eq 2 ] && [[ "$out" == *"sources[0].rate_limit"* ]] &&
     [[ "$out" == *"documented limit of 7"* ]]; then ok
  else bad "$f.json: exit $rc: $out"; fi
done
# Two accounts on one host (a simulator tells them apart by path) each
# have their own budget.
cat > "$tmp/rate-two-accounts.json" <<'JSON'
{"sources":[
 {"name":"a","provider":"kommo","base_url":"http://127.0.0.1:1/kommo/kommo-1",
  "credentials":{"token":"t"}},
 {"name":"b","provider":"kommo","base_url":"http://127.0.0.1:1/kommo/kommo-2",
  "credentials":{"token":"t"}}]}
JSON
out=$("$bin" --check-config "$tmp/rate-two-accounts.json" 2>&1); rc=$?
if [ "$rc" -eq 0 ]; then ok; else bad "two accounts, one host: $rc: $out"; fi
# ... unless the source says it is not a real account (a simulator).
sed 's/"burst": 5 }/"burst": 5, "above_documented": true }/' \
  "$dir/rate-kommo-too-fast.json" > "$tmp/rate-sim.json"
out=$("$bin" --check-config "$tmp/rate-sim.json" 2>&1); rc=$?
if [ "$rc" -eq 0 ]; then ok; else bad "above_documented: exit $rc: $out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
