#!/usr/bin/env bash
# make install (issue 19): the product (evbridge, evbridge-replay) and its
# man pages evbridge(1), evbridge-replay(1), evbridge.json(5), which
# render without warnings and keep up with the code (every option of
# evbridge --help, every key of --print-defaults); the simulator and the
# mock go with make install-dev. The image carries evbridge-replay too.
set -u
cd "$(dirname "$0")/../.."
. tests/integration/lib_e2e.sh

root="$T/root"
make --no-print-directory -s B="$B" DESTDIR="$root" PREFIX=/usr/local install \
  > "$T/install.out" 2>&1
check "make install exits 0" test $? -eq 0
for f in bin/evbridge bin/evbridge-replay share/man/man1/evbridge.1 \
         share/man/man1/evbridge-replay.1 share/man/man5/evbridge.json.5; do
  check "installs $f" test -s "$root/usr/local/$f"
done
check "the binaries are executable" \
  sh -c "'$root/usr/local/bin/evbridge' --version && '$root/usr/local/bin/evbridge-replay' --version"
for f in evbridge-sim evbridge-kafka-mock evbridge-bench-dedupe; do
  check "does not install $f" test ! -e "$root/usr/local/bin/$f"
done

for page in man1/evbridge.1 man1/evbridge-replay.1 man5/evbridge.json.5; do
  LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$root/usr/local/share/man/$page" \
    > "$T/page.txt" 2> "$T/page.err"
  check "man -l $page renders" test -s "$T/page.txt"
  check "man -l $page: no warnings" test ! -s "$T/page.err"
  groff -man -ww -z "$root/usr/local/share/man/$page" > "$T/groff.err" 2>&1
  check "groff -ww $page: no warnings" test ! -s "$T/groff.err"
done

# evbridge(1) names every long option of --help; evbridge.json(5) every key.
MANWIDTH=200 man -l docs/man/evbridge.1 2>/dev/null > "$T/evbridge.txt"
missing=""
for opt in $("$B/bin/evbridge" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
  grep -q -- "$opt" "$T/evbridge.txt" || missing="$missing $opt"
done
check "evbridge(1) names every option of --help${missing:+ (missing:$missing)}" \
  test -z "$missing"
MANWIDTH=200 man -l docs/man/evbridge.json.5 2>/dev/null > "$T/json.txt"
missing=""
for key in $("$B/bin/evbridge" --print-defaults | cut -f1 | grep -v '^provider\.'); do
  grep -qF -- "$key" "$T/json.txt" || missing="$missing $key"
done
check "evbridge.json(5) names every key${missing:+ (missing:$missing)}" \
  test -z "$missing"

root2="$T/root-dev"
make --no-print-directory -s B="$B" DESTDIR="$root2" PREFIX=/usr install-dev \
  > "$T/install-dev.out" 2>&1
check "make install-dev exits 0" test $? -eq 0
for f in evbridge-sim evbridge-kafka-mock; do
  check "install-dev installs $f" test -x "$root2/usr/bin/$f"
done
check "install-dev leaves the product to install" test ! -e "$root2/usr/bin/evbridge"

check "the image builds and copies evbridge-replay" sh -c \
  "grep -q 'build/release/bin/evbridge-replay /usr/local/bin/evbridge-replay' deploy/Dockerfile && grep -q 'evbridge-replay --version' deploy/Dockerfile"
finish
