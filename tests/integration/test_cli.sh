#!/bin/bash
# The command line: help, version, plugins, check, query, exit codes.
. "$(dirname "$0")/lib.sh"
P=(--plugin-dir "$BUILD_DIR/plugins")

"$MITTARI" --help | grep -q "usage: mittari COMMAND" || fail "--help"
"$MITTARI" --version | grep -qE "^mittari [0-9]+\.[0-9]+\.[0-9]+ \(plugin ABI 1\.0\)" || fail "--version"
"$MITTARI" frobnicate 2>/dev/null; [ $? = 2 ] || fail "unknown command: exit 2"
"$MITTARI" run --bogus 2>/dev/null; [ $? = 2 ] || fail "unknown option: exit 2"
"$MITTARI" "${P[@]}" plugins | grep -qE "^  sim +1\.0 +Simulated" || fail "plugins lists sim"
"$MITTARI" "${P[@]}" plugins | grep -qE "^  file +builtin" || fail "plugins lists the file output"
"$MITTARI" "${P[@]}" plugins sim | grep -qE "^  rate +number +default 5; 0 to 10000000" || fail "plugins sim prints the option table"
"$MITTARI" "${P[@]}" plugins file --markdown | grep -q '^| `path` | string | required |' || fail "markdown table"
"$MITTARI" "${P[@]}" plugins nosuch 2>/dev/null; [ $? = 1 ] || fail "unknown plugin: exit 1"

# the demo configuration checks clean
MITTARI_DATA_DIR=$T/demo "$MITTARI" check -c "$SOURCE_DIR/conf.d" "${P[@]}" | grep -q ": ok" || fail "demo config"

# query: run a short agent, then read its log in both formats and with filters
mkdir -p "$T/conf"
cat >"$T/conf/a.yaml" <<YAML
agent:
  site: it-cli
  data_dir: $T/data
  timezone: Europe/Helsinki
inputs:
  sim:
    plugin: sim
    rate: 2000
    opening_hours: "00:00-24:00"
YAML
start_agent "$T/conf"
sleep 1.5
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "agent exit $AGENT_STATUS"
rows=$(db_count "$T/data/mittari.db")
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" | wc -l)
[ "$n" = "$rows" ] || fail "query printed $n of $rows"
"$MITTARI" query -c "$T/conf" "${P[@]}" --format csv | head -1 | grep -q "^seq,gen,ts,site,device,metric,value,unit,kind,subject,tags,revision,suppressed_below,origin$" || fail "csv header"
ins=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id=r.series where s.metric='visitors_in'")
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" --series 'it-cli/*/visitors_in' | wc -l)
[ "$n" = "$ins" ] && [ "$n" -gt 0 ] || fail "--series glob: $n vs $ins"
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" --since now | wc -l)
[ "$n" = 0 ] || fail "--since now printed $n"
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" --since -1h --limit 7 | wc -l)
[ "$n" = 7 ] || fail "--limit 7 printed $n"
# local midnight today vs the same instant in UTC
today=$(TZ=Europe/Helsinki date +%F)
utc=$(TZ=Europe/Helsinki date -d "$today 00:00" -u +%FT%H:%MZ)
a=$("$MITTARI" query -c "$T/conf" "${P[@]}" --since "$today" | wc -l)
b=$("$MITTARI" query -c "$T/conf" "${P[@]}" --since "$utc" | wc -l)
[ "$a" = "$b" ] && [ "$a" = "$rows" ] || fail "local date vs UTC: $a vs $b (rows $rows)"
"$MITTARI" query -c "$T/conf" "${P[@]}" --since someday 2>/dev/null; [ $? = 2 ] || fail "bad time: exit 2"
# today in agent.timezone: the readings of the last 1.5 s are today's (or, just
# after local midnight, yesterday's: then since yesterday holds them all)
a=$("$MITTARI" query -c "$T/conf" "${P[@]}" --since yesterday | wc -l)
[ "$a" = "$rows" ] || fail "--since yesterday: $a of $rows"
# --every: the hourly sums of visitors_in add up to the readings
sum=$("$MITTARI" query -c "$T/conf" "${P[@]}" --series 'it-cli/*/visitors_in' --every 1h --agg count --format csv | tail -n +2 | awk -F, '{s += $(NF-1)} END {print s + 0}')
[ "$sum" = "$ins" ] || fail "--every 1h --agg count: $sum vs $ins"
"$MITTARI" query -c "$T/conf" "${P[@]}" --every 2h 2>/dev/null; [ $? = 2 ] || fail "--every 2h: exit 2"
"$MITTARI" query -c "$T/conf" "${P[@]}" --tag service 2>/dev/null; [ $? = 2 ] || fail "--tag without =: exit 2"
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" --tag service=library | wc -l)
m=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id=r.series where s.tags like '%\"service\":\"library\"%'")
[ "$n" = "$m" ] && [ "$n" -gt 0 ] || fail "--tag service=library: $n vs $m"
"$MITTARI" query -c "$T/conf" "${P[@]}" --format xml 2>/dev/null; [ $? = 2 ] || fail "bad format: exit 2"

# a second agent on the same data dir is refused, exit 4
start_agent "$T/conf"
sleep 0.5
"$MITTARI" run -c "$T/conf" "${P[@]}" 2>"$T/second.log"; st=$?
[ $st = 4 ] || fail "second agent: exit $st"
grep -q "is in use by another mittari (pid $AGENT_PID)" "$T/second.log" || fail "second agent message"
stop_agent TERM

# a corrupt log: clear message, exit 4, nothing changed
printf 'this is not a database, just text that is long enough to be read as one' >"$T/data/mittari.db"
rm -f "$T/data/mittari.db-wal" "$T/data/mittari.db-shm"
cp "$T/data/mittari.db" "$T/corrupt.copy"
"$MITTARI" run -c "$T/conf" "${P[@]}" 2>"$T/corrupt.log"; st=$?
[ $st = 4 ] || fail "corrupt log: exit $st"
grep -q "move .* aside" "$T/corrupt.log" || fail "corrupt log: no advice"
cmp -s "$T/data/mittari.db" "$T/corrupt.copy" || fail "corrupt log was modified"
ok "cli"
