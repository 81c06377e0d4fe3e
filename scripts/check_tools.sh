#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The tools' shared command line (src/cli/cli_options.c): each of
# attn-probe, attn-bench and attn-tune takes --help, --version / -V,
# --opt=value, --opt value, -ovalue and -o value, refuses unknown options
# with status 2, and prints a manual page (--man) that names every option
# its --help lists.
#
# usage: scripts/check_tools.sh BIN_DIR...   (folders holding the tools;
#        a tool found in none is reported and skipped, 77 when none is)
set -u
fail=0 found=0
find_tool() {
  for d in "$@"; do
    [ -x "$d/$tool" ] && { echo "$d/$tool"; return; }
  done
}
check() { # what, command...
  what=$1
  shift
  if ! "$@" >/tmp/check_tools.$$ 2>&1; then
    echo "FAIL: $what: $(head -c 300 /tmp/check_tools.$$)"
    fail=1
  fi
}
status() { # want, command...
  want=$1
  shift
  "$@" >/dev/null 2>&1
  got=$?
  [ "$got" -eq "$want" ] || { echo "FAIL: '$*' exited $got, not $want"; fail=1; }
}
for tool in attn-probe attn-bench attn-tune; do
  exe=$(find_tool "$@")
  if [ -z "$exe" ]; then
    echo "SKIP: $tool not built"
    continue
  fi
  found=$((found + 1))
  check "$tool --help" sh -c "'$exe' --help | grep -q '^usage: $tool'"
  # Output that cannot be written is a failure (exit 1), not a success.
  if [ -w /dev/full ]; then
    check "$tool --help to a full disk" sh -c "'$exe' --help >/dev/full 2>/dev/null; [ \$? -eq 1 ]"
  fi
  check "$tool -h" sh -c "'$exe' -h | grep -q 'Options:'"
  check "$tool --version" sh -c "'$exe' --version | grep -q '^$tool (libattn) [0-9]'"
  check "$tool -V" sh -c "'$exe' -V | grep -q '(libattn)'"
  status 2 "$exe" --no-such-option
  status 2 "$exe" unexpected-argument
  # Every long option of --help is in the manual page.
  "$exe" --man >/tmp/check_tools_man.$$ 2>&1
  check "$tool --man" grep -q '^\.TH' /tmp/check_tools_man.$$
  for opt in $("$exe" --help | sed -n 's/^ *\(-., \)\{0,1\}--\([a-z0-9-]*\).*/\2/p'); do
    grep -q -- "\\\\-\\\\-$(echo "$opt" | sed 's/-/\\\\-/g')" /tmp/check_tools_man.$$ ||
      { echo "FAIL: $tool: --$opt is not in the manual page"; fail=1; }
  done
  rm -f /tmp/check_tools_man.$$
done
# The forms of a value, each reaching the tool.
probe=$(tool=attn-probe find_tool "$@")
if [ -n "$probe" ]; then
  for form in "--device=native" "--device native" "-dnative" "-d native"; do
    check "attn-probe $form" sh -c "'$probe' --json $form | grep -q '\"spec\": \"native\"'"
  done
  check "attn-probe bundled -jv" sh -c "'$probe' -jv -dnative | grep -q '\"native\": {\"isa\"'"
  status 2 "$probe" --device
  status 2 "$probe" --json=yes
fi
bench=$(tool=attn-bench find_tool "$@")
if [ -n "$bench" ]; then
  for form in "--sizes=64" "--sizes 64" "-s64" "-s 64"; do
    check "attn-bench $form" sh -c "'$bench' $form --no-peers -inative -r1 -w0 -cno | grep -q '^ *64 '"
  done
  check "attn-bench --threads=1 -cyes" sh -c "'$bench' --threads=1 -cyes -s32 --no-peers -inative -r1 | grep -q '^ *32 '"
  status 2 "$bench" --sizes=abc
  status 2 "$bench" -cmaybe
fi
tune=$(tool=attn-tune find_tool "$@")
if [ -n "$tune" ]; then
  # A variant that does not exist is refused after parsing, in each form.
  for form in "--kernel=nope" "--kernel nope" "-knope" "-k nope"; do
    check "attn-tune $form" sh -c "'$tune' $form 2>&1 | grep -q '\"nope\" is not a forward kernel variant'"
    status 2 "$tune" $form
  done
  check "attn-tune -o/-d forms" sh -c "'$tune' -o/tmp --device=no-such-device-xyzzy -q 2>&1 | grep -q 'no-such-device-xyzzy'"
fi
rm -f /tmp/check_tools.$$
[ "$found" -gt 0 ] || exit 77
[ "$fail" -eq 0 ] || exit 1
echo "check_tools: $found tools: --help, --version, value forms, manual pages"
