#!/bin/bash
# The option tables in docs/ are generated from the code's option tables;
# this fails when they are out of date (run docs/generate.sh to fix).
. "$(dirname "$0")/lib.sh"
MITTARI="$MITTARI" PLUGIN_DIR="$BUILD_DIR/plugins" "$SOURCE_DIR/docs/generate.sh" --check || fail "docs out of date: run docs/generate.sh"
n=$(grep -c "<!-- options: " "$SOURCE_DIR"/docs/*.md "$SOURCE_DIR"/docs/*/*.md | awk -F: '{s+=$2} END {print s}')
[ "$n" -ge 4 ] || fail "only $n generated tables found"
# README's first lines are the two commands
head -5 "$SOURCE_DIR/README.md" | grep -q '^./packaging/dev/demo.sh' || fail "README: demo command"
head -5 "$SOURCE_DIR/README.md" | grep -q '^./tests/run.sh' || fail "README: test command"
grep -q 'tests/run.sh' "$SOURCE_DIR/.ci/run" || fail ".ci/run does not call the README's test command"
ok "docs generated from the code are current"
