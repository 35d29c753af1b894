#!/bin/bash
# The command line: help, version, plugins, check, query, exit codes.
. "$(dirname "$0")/lib.sh"
P=(--plugin-dir "$BUILD_DIR/plugins")

"$MITTARI" --help | grep -q "usage: mittari COMMAND" || fail "--help"
"$MITTARI" --version | grep -qE "^mittari [0-9]+\.[0-9]+\.[0-9]+ \(plugin ABI 1\.1\)" || fail "--version"
"$MITTARI" frobnicate 2>/dev/null; [ $? = 2 ] || fail "unknown command: exit 2"
"$MITTARI" run --bogus 2>/dev/null; [ $? = 2 ] || fail "unknown option: exit 2"
"$MITTARI" "${P[@]}" plugins | grep -qE "^  sim +1\.0 +Simulated" || fail "plugins lists sim"
"$MITTARI" "${P[@]}" plugins | grep -qE "^  file +builtin" || fail "plugins lists the file output"
"$MITTARI" "${P[@]}" plugins sim | grep -qE "^  rate +number +default 5; 0 to 10000000" || fail "plugins sim prints the option table"
"$MITTARI" "${P[@]}" plugins file --markdown | grep -q '^| `path` | string | required |' || fail "markdown table"
"$MITTARI" "${P[@]}" plugins nosuch 2>/dev/null; [ $? = 1 ] || fail "unknown plugin: exit 1"
# issue 9: a plugin dir that cannot be read, or a refused plugin in it, is an error
"$MITTARI" plugins -P /nonexistent >/dev/null 2>"$T/p.err"; [ $? = 1 ] || fail "plugins -P /nonexistent: exit 0"
grep -q "^mittari: /nonexistent: No such file or directory" "$T/p.err" || fail "plugins -P /nonexistent: message"
"$MITTARI" plugins -P "$TEST_PLUGIN_DIR" >"$T/p.out" 2>"$T/p.err"; [ $? = 1 ] || fail "refused plugins: exit 0"
grep -q "^  probe " "$T/p.out" || fail "the good plugin is still listed"
[ "$(grep -c refused "$T/p.err")" -ge 4 ] || fail "each refused plugin named"

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
# Local dates, on readings at fixed instants (issue 9: comparing "today" in
# two forms made this depend on the hour the test ran at). A copy of the log
# analysed with --data-dir, no configuration, in Europe/Helsinki: 22:30 UTC
# in winter is already the next local day; the spring DST day has 23 hours,
# the autumn one 25 (03:00-04:00 local twice).
FIXED=(
  2026-03-28T21:59:59Z 2026-03-28T22:00:00Z 2026-03-29T00:59:59Z 2026-03-29T01:00:00Z
  2026-03-29T20:59:59Z 2026-03-29T21:00:00Z
  2026-10-24T20:59:59Z 2026-10-24T21:00:00Z 2026-10-25T00:30:00Z 2026-10-25T01:30:00Z
  2026-10-25T21:59:59Z 2026-10-25T22:00:00Z
  2026-12-01T21:59:59Z 2026-12-01T22:30:00Z
)
[ "$rows" -ge ${#FIXED[@]} ] || fail "only $rows readings to give fixed times"
mkdir -p "$T/fixed"
cp "$T/data/mittari.db" "$T/fixed/"
first=$(sqlite3 "$T/fixed/mittari.db" "select min(seq) from readings")
{
  echo "delete from readings where seq >= $first + ${#FIXED[@]};"
  for i in "${!FIXED[@]}"; do
    echo "update readings set ts = $(date -u -d "${FIXED[$i]}" +%s) * 1000000 where seq = $first + $i;"
  done
} | sqlite3 "$T/fixed/mittari.db" || fail "cannot set fixed times"
# ASan wants to be first in the library list; libfaketime is preloaded
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
command -v faketime >/dev/null || fail "faketime missing (packaging/dev/deps.sh installs it)"

# fixed_between A B: the fixed instants in [A, B), both as UTC seconds
fixed_between() {
  local t out=
  for t in "${FIXED[@]}"; do
    t=$(date -u -d "$t" +%s)
    [ "$t" -ge "$1" ] && [ "$t" -lt "$2" ] && out+="$(date -u -d "@$t" +%FT%T).000000Z "
  done
  echo "$out"
}
# q NOW ARGS...: the ts column of a query run at the fake wall clock NOW (UTC)
q() {
  local now=$1; shift
  TZ=UTC faketime "$now" "$MITTARI" query --data-dir "$T/fixed" --format csv "$@" |
    tail -n +2 | cut -d, -f3 | sort | tr '\n' ' '
}
local_midnight() { TZ=Europe/Helsinki date -d "$1 00:00" +%s; }  # GNU date: local, no -u
checked=0
for now in "2026-12-01 22:45:00" "2026-03-29 01:30:00" "2026-10-25 02:00:00" "2026-07-01 12:00:00"; do
  for day in 2026-03-28 2026-03-29 2026-10-25 2026-12-01 2026-12-02; do
    next=$(date -d "$day + 1 day" +%F)
    want=$(fixed_between "$(local_midnight "$day")" "$(local_midnight "$next")")
    got=$(q "$now" --since "$day" --until "$next")
    [ "$got" = "$want" ] || fail "at $now UTC, local day $day: got [$got], want [$want]"
    # the same day as UTC instants and with an offset
    utc=$(date -u -d "@$(local_midnight "$day")" +%FT%H:%MZ)
    utc_next=$(date -u -d "@$(local_midnight "$next")" +%FT%H:%MZ)
    [ "$(q "$now" --since "$utc" --until "$utc_next")" = "$want" ] || fail "at $now, $day as UTC $utc"
    off=$(TZ=Europe/Helsinki date -d "$day 00:00" +%FT%H:%M%:z)
    [ "$(q "$now" --since "$off" --until "$next")" = "$want" ] || fail "at $now, $day as $off"
    checked=$((checked + 1))
  done
  # relative times come from the (fake) clock
  nows=$(date -u -d "$now" +%s)
  want=$(fixed_between $((nows - 7200)) "$nows")
  [ "$(q "$now" --since -2h --until now)" = "$want" ] || fail "at $now: --since -2h gave [$(q "$now" --since -2h --until now)], want [$want]"
done
# the days are what they should be, not merely equal: 23, 24 and 25 hours
[ $(( $(local_midnight 2026-03-30) - $(local_midnight 2026-03-29) )) = 82800 ] || fail "spring DST day"
[ "$(q "2026-07-01 12:00:00" --since 2026-03-29 --until 2026-03-30 | wc -w)" = 4 ] || fail "spring day readings"
[ "$(q "2026-07-01 12:00:00" --since 2026-10-25 --until 2026-10-26 | wc -w)" = 4 ] || fail "autumn day readings"
[ "$(q "2026-07-01 12:00:00" --since 2026-12-02 --until 2026-12-03)" = "2026-12-01T22:30:00.000000Z " ] ||
  fail "22:30 UTC on 1 December is 2 December in Helsinki"
ok "local days at $checked fake clocks and days, DST included"

# today, yesterday, this-month, last-month: local days and months of
# agent.timezone at the (fake, UTC) clock, not the machine's date
for now in "2026-12-01 22:45:00" "2026-03-29 01:30:00" "2026-10-25 02:00:00" "2026-10-31 22:30:00" "2026-11-01 10:00:00"; do
  d=$(TZ=Europe/Helsinki date -d "@$(date -u -d "$now" +%s)" +%F)   # the local date at now
  m1=${d:0:7}-01
  want=$(fixed_between "$(local_midnight "$d")" 9999999999)
  [ "$(q "$now" --since today)" = "$want" ] || fail "at $now: --since today gave [$(q "$now" --since today)], want [$want]"
  want=$(fixed_between "$(local_midnight "$(date -d "$d - 1 day" +%F)")" "$(local_midnight "$d")")
  [ "$(q "$now" --since yesterday --until today)" = "$want" ] || fail "at $now: yesterday gave [$(q "$now" --since yesterday --until today)], want [$want]"
  want=$(fixed_between "$(local_midnight "$(date -d "$m1 - 1 month" +%F)")" "$(local_midnight "$m1")")
  [ "$(q "$now" --since last-month --until this-month)" = "$want" ] || fail "at $now: last month gave [$(q "$now" --since last-month --until this-month)], want [$want]"
done
# not merely equal to the computation: at 00:30 on 1 November in Helsinki the
# UTC clock still says October, and last month is October
[ "$(q "2026-10-31 22:30:00" --since last-month --until this-month | wc -w)" = 6 ] || fail "last month at local 1 November"
[ "$(q "2026-12-01 22:45:00" --since today)" = "2026-12-01T22:30:00.000000Z " ] || fail "today at 00:45 local"
ok "today, yesterday, this-month, last-month at fake clocks"

# --every: the hourly counts of visitors_in add up to the readings
sum=$("$MITTARI" query -c "$T/conf" "${P[@]}" --series 'it-cli/*/visitors_in' --every 1h --agg count --format csv | tail -n +2 | awk -F, '{s += $(NF-1)} END {print s + 0}')
[ "$sum" = "$ins" ] || fail "--every 1h --agg count: $sum vs $ins"
"$MITTARI" query -c "$T/conf" "${P[@]}" --every 2h 2>/dev/null; [ $? = 2 ] || fail "--every 2h: exit 2"
"$MITTARI" query -c "$T/conf" "${P[@]}" --tag service 2>/dev/null; [ $? = 2 ] || fail "--tag without =: exit 2"
n=$("$MITTARI" query -c "$T/conf" "${P[@]}" --tag service=library | wc -l)
m=$(sqlite3 "$T/data/mittari.db" "select count(*) from readings r join series s on s.id=r.series where s.tags like '%\"service\":\"library\"%'")
[ "$n" = "$m" ] && [ "$n" -gt 0 ] || fail "--tag service=library: $n vs $m"

# --data-dir: no configuration needed; with -c it only replaces the data dir
"$MITTARI" query --data-dir "$T/fixed" -c /nonexistent >/dev/null 2>&1; [ $? = 3 ] || fail "--data-dir with a bad -c: not a config error"
[ "$("$MITTARI" query --data-dir "$T/fixed" | wc -l)" = ${#FIXED[@]} ] || fail "--data-dir alone"
[ "$("$MITTARI" query -c "$T/conf" "${P[@]}" --data-dir "$T/fixed" | wc -l)" = ${#FIXED[@]} ] || fail "--data-dir with -c"
"$MITTARI" query --data-dir "$T/nonexistent" 2>"$T/nodb.err"; [ $? = 4 ] || fail "--data-dir without a log: exit"
grep -q "$T/nonexistent/mittari.db" "$T/nodb.err" || fail "--data-dir without a log: message names the file"
"$MITTARI" check -c "$T/conf" --data-dir "$T/fixed" 2>/dev/null; [ $? = 2 ] || fail "--data-dir is for query only"
"$MITTARI" query -c "$T/conf" "${P[@]}" --since someday 2>/dev/null; [ $? = 2 ] || fail "bad time: exit 2"
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
grep -q "mittari salvage -c" "$T/corrupt.log" || fail "corrupt log: no advice"
cmp -s "$T/data/mittari.db" "$T/corrupt.copy" || fail "corrupt log was modified"
ok "cli"
