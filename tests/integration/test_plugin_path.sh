#!/bin/bash
# agent.plugin_path: an integrator's plugins (here the SDK example of
# docs/examples/plugin, built with its own Makefile) load from the
# directories it names, before the packaged plugin dir, beside the shipped
# plugins; `check` refuses a relative or missing directory; `plugins -c`
# lists them. A plugin replaced on disk is NOT picked up by SIGHUP (the
# documented behaviour): the reload logs a warning naming the file and the
# old code keeps running; a restart loads the new file. A changed
# plugin_path is refused by a reload (restart needed).
. "$(dirname "$0")/lib.sh"

EX="$SOURCE_DIR/docs/examples/plugin"
# build_example DIR METRIC VERSION: the example, its default metric and
# version changed, built with its Makefile into DIR/heartbeat.so
build_example() {
  local b="$T/src-$2-$3"
  mkdir -p "$b" "$1"
  cp "$EX/heartbeat.c" "$EX/Makefile" "$b/"
  sed -i -e "s/\.def = \"uptime\"/.def = \"$2\"/" -e "s/\.version = \"1.0\"/.version = \"$3\"/" "$b/heartbeat.c"
  grep -q "\"$2\"" "$b/heartbeat.c" && grep -q "\"$3\"" "$b/heartbeat.c" || fail "example did not take $2 $3"
  make -s -C "$b" MITTARI_CFLAGS="-I$SOURCE_DIR/include" CFLAGS="-O2 -Wall -Wextra -Werror" >"$T/make.out" 2>&1 ||
    { cat "$T/make.out"; fail "the example does not build"; }
  # install: a new file, as the docs say a plugin is replaced
  make -s -C "$b" install PLUGINDIR="$1" >/dev/null || fail "make install"
}
count_metric() {
  sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on r.series = s.id where s.metric = '$1'" 2>/dev/null || echo 0
}

# docs/plugin-sdk.md ends with the example's files, character for character
for f in heartbeat.c Makefile CMakeLists.txt; do
  awk -v f="$f" '$0 ~ "<!-- example: examples/plugin/" f {m = 1; next}
    m && /^```/ {n++; if (n == 2) exit; next} m && n == 1' "$SOURCE_DIR/docs/plugin-sdk.md" >"$T/doc-$f"
  [ -s "$T/doc-$f" ] || fail "docs/plugin-sdk.md does not show $f"
  diff -u "$EX/$f" "$T/doc-$f" >&2 || fail "docs/plugin-sdk.md: $f differs from docs/examples/plugin/$f"
done

build_example "$T/acme" uptime 1.0
build_example "$T/other" shadow 9.9
mkdir -p "$T/conf"
cat >"$T/conf/10-agent.yaml" <<YAML
agent:
  site: it-path
  data_dir: $T/data
  plugin_path: $T/acme:$T/other
  stats_interval: 0
YAML
cat >"$T/conf/20-inputs.yaml" <<YAML
inputs:
  beat:
    plugin: heartbeat
    interval: 100ms
  lobby:
    plugin: sim
    rate: 5
    opening_hours: "00:00-24:00"
YAML
P=(--plugin-dir "$BUILD_DIR/plugins")

# 1. check and plugins see the path: the first directory wins, shipped ones too
"$MITTARI" check -c "$T/conf" "${P[@]}" >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "check with plugin_path"; }
grep -q "ok (site it-path, 2 inputs" "$T/check.out" || fail "check: $(cat "$T/check.out")"
"$MITTARI" plugins -c "$T/conf" "${P[@]}" >"$T/plugins.out" 2>&1 || fail "plugins -c"
grep -q "^input plugins ($T/acme:$T/other:$BUILD_DIR/plugins):" "$T/plugins.out" || fail "search path not shown: $(head -1 "$T/plugins.out")"
grep -q "^  heartbeat *1.0 .*$T/acme/heartbeat.so" "$T/plugins.out" || fail "heartbeat from acme not listed"
grep -q "^  sim " "$T/plugins.out" || fail "shipped plugins not listed beside it"
"$MITTARI" plugins heartbeat -c "$T/conf" "${P[@]}" | grep -q "input plugin heartbeat 1.0" || fail "plugins heartbeat"
# without the configuration, only the plugin dir
"$MITTARI" plugins -c "$T/nothing" "${P[@]}" | grep -q "^  heartbeat" && fail "heartbeat listed without plugin_path"
# the order decides
sed -i "s#plugin_path: .*#plugin_path: $T/other:$T/acme#" "$T/conf/10-agent.yaml"
"$MITTARI" plugins heartbeat -c "$T/conf" "${P[@]}" | grep -q "input plugin heartbeat 9.9" || fail "first directory of plugin_path does not win"
sed -i "s#plugin_path: .*#plugin_path: $T/acme:$T/other#" "$T/conf/10-agent.yaml"

# 2. bad directories are configuration errors, at their line
cp -r "$T/conf" "$T/bad"
sed -i "s#plugin_path: .*#plugin_path: acme:$T/missing#" "$T/bad/10-agent.yaml"
"$MITTARI" check -c "$T/bad" "${P[@]}" >"$T/bad.out" 2>&1 && fail "check accepted a bad plugin_path"
[ $? = 3 ] || true
grep -q "10-agent.yaml:4:.*plugin_path: 'acme' is not an absolute path" "$T/bad.out" || fail "relative dir: $(cat "$T/bad.out")"
grep -q "10-agent.yaml:4:.*plugin_path: no directory $T/missing" "$T/bad.out" || fail "missing dir: $(cat "$T/bad.out")"

# 3. run: the integrator's plugin and a shipped one side by side
start_agent "$T/conf"
wait_for 20 sh -c "[ \$(sqlite3 $T/data/mittari.db \"select count(*) from readings r join series s on r.series = s.id where s.metric = 'uptime'\" 2>/dev/null || echo 0) -ge 3 ]" ||
  fail "no readings from the plugin_path plugin"

# 4. replaced on disk + SIGHUP: warned, old code keeps running
build_example "$T/acme" beats 2.0
kill -HUP "$AGENT_PID"
wait_for 10 grep -q "configuration reloaded" "$T/agent.log" || fail "reload not applied"
grep -q "plugin: $T/acme/heartbeat.so changed on disk since it was loaded; .*restart the agent" "$T/agent.log" ||
  fail "no warning that the replaced plugin needs a restart"
before=$(count_metric uptime)
wait_for 10 sh -c "[ \$(sqlite3 $T/data/mittari.db \"select count(*) from readings r join series s on r.series = s.id where s.metric = 'uptime'\") -gt $before ]" ||
  fail "the loaded plugin stopped after the reload"
[ "$(count_metric beats)" = 0 ] || fail "the replaced file was loaded without a restart"
kill -HUP "$AGENT_PID"
wait_for 10 sh -c "[ \$(grep -c 'configuration reloaded' $T/agent.log) -ge 2 ]" || fail "second reload"
[ "$(grep -c 'changed on disk' "$T/agent.log")" = 1 ] || fail "the warning is repeated at every reload"

# 5. plugin_path changed: the reload is refused, the running configuration stays
sed -i "s#plugin_path: .*#plugin_path: $T/other#" "$T/conf/10-agent.yaml"
kill -HUP "$AGENT_PID"
wait_for 10 grep -q "keeping the running one" "$T/agent.log" || fail "changed plugin_path not refused"
grep -q "plugin_path changed: plugins are searched in $T/acme:$T/other:" "$T/agent.log" || fail "no reason given for the refused reload"
kill -0 "$AGENT_PID" || fail "agent died"
sed -i "s#plugin_path: .*#plugin_path: $T/acme:$T/other#" "$T/conf/10-agent.yaml"

# 6. a restart loads the new file
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "stop: exit $AGENT_STATUS"
start_agent "$T/conf"
wait_for 20 sh -c "[ \$(sqlite3 $T/data/mittari.db \"select count(*) from readings r join series s on r.series = s.id where s.metric = 'beats'\") -ge 2 ]" ||
  fail "the restart did not load the replaced plugin"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "stop: exit $AGENT_STATUS"
ok "plugin_path: integrator plugins beside shipped ones; replaced file needs a restart (warned)"
