#!/usr/bin/env bash
# A fresh machine (issue 19): a missing build or test dependency stops
# make at once with one line naming it and the command, before anything
# is compiled; `make deps` goes through sudo when not root. Nothing is
# built or installed here: the check runs when the Makefile is read.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

# A pkg-config that knows every package but one.
fake_pkgconfig() { # fake_pkgconfig PACKAGE -> path
  cat > "$T/pkg-config-no-$1" <<EOS
#!/bin/sh
for a in "\$@"; do [ "\$a" = "$1" ] && exit 1; done
exec pkg-config "\$@"
EOS
  chmod +x "$T/pkg-config-no-$1"
  echo "$T/pkg-config-no-$1"
}

for goal in all run test; do
  make --no-print-directory PKG_CONFIG="$(fake_pkgconfig libcurl)" \
    B="$T/build" "$goal" > "$T/out.$goal" 2>&1
  rc=$?
  check "make $goal without libcurl: fails" test "$rc" -ne 0
  check "make $goal without libcurl: one line" test "$(wc -l < "$T/out.$goal")" -eq 1
  check "make $goal without libcurl: names it and the command" \
    grep -q "missing libcurl (libcurl4-openssl-dev): run make deps" "$T/out.$goal"
done
check "nothing was built" test ! -e "$T/build"

make --no-print-directory PKG_CONFIG="$(fake_pkgconfig rdkafka)" all \
  > "$T/out.rdkafka" 2>&1
check "without librdkafka: names it" \
  grep -q "missing rdkafka (librdkafka-dev): run make deps" "$T/out.rdkafka"
make --no-print-directory PKG_CONFIG="$T/no-such-pkg-config" all \
  > "$T/out.pc" 2>&1
check "without pkg-config: names it" \
  grep -q "missing pkg-config (pkg-config): run make deps" "$T/out.pc"
make --no-print-directory PKG_CONFIG="$(fake_pkgconfig libcurl)" -n deps \
  > "$T/out.deps" 2>&1
check "make deps itself is not stopped by the check" grep -q "apt-get" "$T/out.deps"
make --no-print-directory PKG_CONFIG="$(fake_pkgconfig libcurl)" -n lint \
  > "$T/out.lint" 2>&1
check "make lint is not stopped by it either" grep -q "clang-format" "$T/out.lint"
make --no-print-directory -n all > /dev/null 2>&1
check "with everything present, nothing is said" test $? -eq 0

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && \
   su -s /bin/sh nobody -c "test -r Makefile" 2>/dev/null; then
  su -s /bin/sh nobody -c "make --no-print-directory -n deps" > "$T/out.sudo" 2>&1
  check "make deps uses sudo when not root" grep -q "sudo apt-get update" "$T/out.sudo"
  make --no-print-directory -n deps > "$T/out.root" 2>&1
  check "and not as root" sh -c "! grep -q sudo '$T/out.root'"
else
  make --no-print-directory -n deps > "$T/out.sudo" 2>&1
  if [ "$(id -u)" = 0 ]; then
    check "make deps: no sudo as root" sh -c "! grep -q sudo '$T/out.sudo'"
  else
    check "make deps uses sudo when not root" grep -q "sudo apt-get update" "$T/out.sudo"
  fi
fi
finish
