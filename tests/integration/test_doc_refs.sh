#!/usr/bin/env bash
# Everything the code and the docs cite is in the repository
# (docs/architecture.md "Conventions"): scripts/check-doc-refs passes on
# the tree, and fails, naming the file and line, on a citation of a
# document that does not exist.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

scripts/check-doc-refs > "$T/tree.txt"
rc=$?
cat "$T/tree.txt"
check "every .md the tree cites exists" test "$rc" -eq 0

gone=no-such-page   # a name this file must not cite itself
printf '/* see %s.md "Delivery contract" and docs/delivery.md */\n' "$gone" \
  > "$T/cites.c"
scripts/check-doc-refs "$T/cites.c" > "$T/bad.txt"
check "a missing document fails the check" test $? -eq 1
check "the miss names file, line and document" \
  grep -q "cites.c:1: cites $gone.md, which is not in the repository" "$T/bad.txt"
check "an existing document is not reported" \
  sh -c "! grep -q 'docs/delivery.md' '$T/bad.txt'"
printf 'x=$T/out.md /tmp/y.md https://example.org/a/b.md BUILD_DIR/z.md\n' \
  > "$T/skips.sh"
scripts/check-doc-refs "$T/skips.sh" > "$T/skips.txt"
check "variables, absolute paths, URLs and placeholders are not citations" \
  test $? -eq 0
finish
