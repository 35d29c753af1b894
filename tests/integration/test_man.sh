#!/bin/bash
# The man pages the build made from docs/man/*.md (packaging/manpage.py):
# clean for groff with every warning on, and generated from the code: every
# option of the agent section is in mittari.conf(5), every installed plugin
# and output type with each of its options in mittari-plugins(7), every
# command of `mittari --help` in mittari(1), every rule option in
# mittari-rules(7).
. "$(dirname "$0")/lib.sh"
command -v groff >/dev/null || fail "groff missing (packaging/dev/deps.sh installs groff-base)"
MAN="$BUILD_DIR/man"
P=(--plugin-dir "$BUILD_DIR/plugins" -c "$T/none")

for src in "$SOURCE_DIR"/docs/man/*.[1-8].md; do
  page=$(basename "$src" .md)
  [ -f "$MAN/$page" ] && [ -f "$MAN/$page.gz" ] || fail "the build made no $page"
  [ "$MAN/$page" -nt "$src" ] || fail "$page is older than its source"
  LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$MAN/$page" 2>"$T/groff.out"
  [ -s "$T/groff.out" ] && fail "$page: $(head -3 "$T/groff.out")"
  head -2 "$MAN/$page" | grep -q "^\.TH \"$(echo "${page%.*}" | tr a-z A-Z)\" \"${page##*.}\"" || fail "$page: no .TH line"
done

# text of a page as a reader sees it
render() { LC_ALL=C.UTF-8 MANWIDTH=200 groff -man -Tutf8 -P-cbou "$MAN/$1" 2>/dev/null; }
render mittari.conf.5 >"$T/conf.txt"
render mittari-plugins.7 >"$T/plugins.txt"
render mittari.1 >"$T/cli.txt"
render mittari-rules.7 >"$T/rules.txt"

# option_names NAME: the options of an option table, from the binary
option_names() { "$MITTARI" plugins "$1" --markdown "${P[@]}" | sed -n 's/^| `\([a-z_0-9]*\)`.*/\1/p'; }
n=0
for o in $(option_names agent); do
  grep -qE "^ *$o +(\(|or )" "$T/conf.txt" || fail "mittari.conf(5) lacks agent option $o"
  n=$((n + 1))
done
[ "$n" -ge 15 ] || fail "only $n agent options found"
"$MITTARI" plugins "${P[@]}" | sed -n 's/^  \([a-z_0-9]*\) .*/\1/p' >"$T/names"
[ "$(wc -l <"$T/names")" -ge 6 ] || fail "mittari plugins lists too little"
while read -r name; do
  grep -q "^   $name$" "$T/plugins.txt" || fail "mittari-plugins(7) has no section for $name"
  for o in $(option_names "$name"); do
    grep -qE "^ *$o +(\(|or )" "$T/plugins.txt" || fail "mittari-plugins(7) lacks option $o of $name"
  done
done <"$T/names"
for cmd in run check plugins query rule ports salvage; do
  grep -q "^ *$cmd " "$T/cli.txt" || grep -q "^ *$cmd$" "$T/cli.txt" || fail "mittari(1) lacks command $cmd"
done

# mittari-rules(7): the tutorial and reference of docs/rules.md with the
# rules' option table from the binary
r=0
for o in $(option_names rules); do
  grep -qE "^ *$o +(\(|or )" "$T/rules.txt" || fail "mittari-rules(7) lacks rule option $o"
  r=$((r + 1))
done
[ "$r" -ge 6 ] || fail "only $r rule options found"
for h in "window" "emit" "mittari rule test" "Limits"; do
  grep -qi "^ *$h" "$T/rules.txt" || fail "mittari-rules(7) lacks the section $h"
done
ok "man pages: groff-clean, $n agent options, $r rule options, $(wc -l <"$T/names") plugins and outputs with their options"
