#!/bin/bash
# The postgresql output against a real PostgreSQL (initdb + pg_ctl in a temp
# dir): the table is created and holds every reading exactly once, also after
# a replay; derived readings' flags arrive as documented (a suppressed figure
# has no value); a constraint error parks the batch and the rest goes on;
# `match` selects readings; two agents with the same id are found by the
# documented query; sslmode without a certificate check warns.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

pg_start
mkdir -p "$T/conf"
conf() { # conf ID DATADIR TABLE EXTRA
  cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-pg
  id: $1
  data_dir: $2
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 500
    opening_hours: "00:00-24:00"
    card_share: 0.2
    poll_interval: 50ms
outputs:
  wh:
    type: postgresql
    conninfo: host=127.0.0.1 port=$PG_PORT user=test dbname=postgres
    table: $3
    batch_size: 200
    retry_min: 100ms
    retry_max: 500ms
$4
YAML
}

# exactly_once DB TABLE AGENT: the table holds the log's readings, each once,
# with the same time, series, value and subject
exactly_once() {
  psql -X -A -F $'\t' -t -q "$PG_CONN" -c "select seq, generation, extract(epoch from time)*1000000, site, device, metric, coalesce(value::text,''), coalesce(subject,''), kind from $2 where agent_id = '$3' order by seq" >"$T/pg.tsv" ||
    fail "psql failed"
  python3 - "$1" "$T/pg.tsv" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
gen = con.execute("select value from meta where key='generation'").fetchone()[0]
series = {r[0]: r[1:] for r in con.execute("select id, site, device, metric from series")}
rows = {r[0]: r[1:] for r in con.execute("select seq, ts, series, value, coalesce(subject,'') from readings")}
seen = set()
for line in open(sys.argv[2]):
    seq, g, ts, site, dev, met, val, subj, kind = line.rstrip("\n").split("\t")
    seq = int(seq)
    if seq in seen:
        sys.exit(f"seq {seq} twice in the table")
    seen.add(seq)
    if int(g) != gen:
        sys.exit(f"seq {seq}: generation {g}, the log's is {gen}")
    lts, sid, lval, lsubj = rows[seq]
    if abs(float(ts) - lts) > 1 or (site, dev, met) != series[sid] or float(val) != lval or subj != lsubj:
        sys.exit(f"seq {seq} differs: table {line.strip()} log {rows[seq]}")
missing = sorted(set(rows) - seen)
if missing:
    sys.exit(f"{len(missing)} of {len(rows)} readings not in the table, first {missing[:5]}")
if not rows:
    sys.exit("the log is empty: nothing was tested")
print(f"{len(rows)} readings, each exactly once")
PY
}

# 1. create the table, deliver, stop; every reading exactly once
conf gw-a "$T/a" readings ""
start_agent "$T/conf"
wait_for 20 bash -c "n=\$(psql -X -A -t -q '$PG_CONN' -c 'select count(*) from readings' 2>/dev/null); [ \"\${n:-0}\" -gt 400 ]" ||
  fail "no rows arrived"
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
exactly_once "$T/a/mittari.db" readings gw-a || fail "not exactly once"
grep -q "output postgresql\[wh\]: sslmode is prefer" "$T/agent.log" || fail "no warning for an unchecked server certificate"
ok "table created, every reading exactly once; sslmode without a check warned"

# 2. a replay of everything changes nothing
n1=$(psql_q "select count(*) from readings")
"$MITTARI" replay -c "$T/conf" wh --since 2000-01-01 >"$T/replay.txt" 2>&1 || fail "replay: $(cat "$T/replay.txt")"
grep -q "re-sent $n1 readings" "$T/replay.txt" || fail "replay: $(cat "$T/replay.txt") (table has $n1)"
[ "$(psql_q "select count(*) from readings")" = "$n1" ] || fail "a replay added rows"
exactly_once "$T/a/mittari.db" readings gw-a || fail "not exactly once after replay"
ok "replay of $n1 readings: the table is unchanged"

# 2b. a connection does not queue on the table: with the table there, an
# insert of someone else still open (holding its ROW EXCLUSIVE lock) must not
# hold up the agent's connect (a CREATE INDEX IF NOT EXISTS would wait for it)
psql -X -q "$PG_CONN" -c "begin; insert into readings (time, site, device, metric, kind, agent_id, generation, seq) values (now(), 's', 'd', 'm', 'gauge', 'other', 1, 1); select pg_sleep(30); rollback;" >/dev/null 2>&1 &
HOLDER=$!
wait_for 5 bash -c "[ \"\$(psql -X -A -t -q '$PG_CONN' -c \"select count(*) from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'readings' and l.mode = 'RowExclusiveLock' and l.granted\")\" -gt 0 ]" ||
  fail "the lock holder did not start"
conf gw-a "$T/a" readings "    connect_timeout: 1s"
start_agent "$T/conf"
wait_for 12 bash -c "n=\$(psql -X -A -t -q '$PG_CONN' -c \"select count(*) from readings where agent_id = 'gw-a'\"); [ \"\${n:-0}\" -gt $n1 ]" ||
  fail "no rows arrived while another insert was open: $(grep -h 'warehouse\|wh\]' "$T/agent.log" | tail -3)"
kill_holder_ok=$(kill -0 "$HOLDER" 2>/dev/null && echo yes)
stop_agent TERM
# its backend would sleep on with the lock after a kill of psql: end it
psql_q "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep(30)%' and pid <> pg_backend_pid()" >/dev/null
wait "$HOLDER" 2>/dev/null
[ "$kill_holder_ok" = yes ] || fail "the other insert ended before the agent's rows arrived: nothing was tested"
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
exactly_once "$T/a/mittari.db" readings gw-a || fail "not exactly once after the reconnect"
ok "connect with the table there takes no table lock: rows arrive while another insert is open"

# 3. derived readings: flags and suppression as documented; match readings: derived
sqlite3 "$T/a/mittari.db" <<SQL
insert into series(id, site, device, metric, unit, kind, bits, tags)
  select max(id)+1, 'it-pg', 'rule-visits', 'families_month', '1', 2, 0, '{"theme":"culture"}' from series;
insert into readings(seq, ts, series, value, subject, flags)
  select max(seq)+1, 1764536400000000, (select max(id) from series), 0, null, 1|(5<<8)|65536 from readings;
insert into readings(seq, ts, series, value, subject, flags)
  select max(seq)+1, 1764536400000000, (select max(id) from series), 42, null, (2<<1)|65536 from readings;
insert or replace into meta(key, value) select 'last_seq', max(seq) from readings;
SQL
conf gw-a "$T/a" readings "    match:
      - {readings: derived, tags: 'theme=cult*'}"
sed -i 's/rate: 500/rate: 50/' "$T/conf/10.yaml"
sed -i 's/  wh:/  derived:/' "$T/conf/10.yaml"
start_agent "$T/conf"
wait_for 20 bash -c "[ \"\$(psql -X -A -t -q '$PG_CONN' -c \"select count(*) from readings where device='rule-visits'\")\" = 2 ]" ||
  fail "derived readings did not arrive"
sleep 0.5
stop_agent TERM
got=$(psql_q "select coalesce(value::text,'NULL'), coalesce(suppressed_below::text,'-'), revision, tags->>'theme' from readings where device='rule-visits' order by seq" | tr '\n' ' ')
[ "$got" = "NULL|5|0|culture 42|-|2|culture " ] || fail "derived readings in the table: $got"
[ "$(psql_q "select count(*) from readings where device <> 'rule-visits' and seq > $(sqlite3 "$T/a/mittari.db" 'select max(seq)-2 from readings')")" = 0 ] ||
  fail "match: derived let raw readings through"
ok "derived readings: a suppressed figure has no value and says its threshold; a revision is kept; match by kind and tags"

# 4. a constraint of the warehouse refuses some rows: their batch is parked, the rest goes on
psql_q "create table strict (like readings including all); alter table strict add constraint no_gate check (device <> 'gate')"
conf gw-a "$T/b" strict "    create_table: false"
# the gate is read once a second: with 20 readings a batch, most batches have none
sed -i -e 's/batch_size: 200/batch_size: 20/' -e 's/poll_interval: 50ms/poll_interval: 1s/' "$T/conf/10.yaml"
start_agent "$T/conf"
wait_for 15 grep -q "refused permanently" "$T/agent.log" || fail "no batch was parked"
sleep 1
stop_agent TERM
grep "refused permanently" "$T/agent.log" | grep -q "SQLSTATE 23514" || fail "the park does not say which constraint"
"$MITTARI" outputs -c "$T/conf" >"$T/outputs.txt"
grep -Eq "parked: +[1-9]" "$T/outputs.txt" || fail "outputs: $(cat "$T/outputs.txt")"
[ "$(psql_q 'select count(*) from strict')" -gt 0 ] || fail "nothing else was delivered"
ok "constraint error: batch parked (SQLSTATE 23514), the other batches delivered"

# 5. two agents with the same id (a cloned configuration) are visible at the warehouse
conf gw-same "$T/c1" readings ""
cp -r "$T/conf" "$T/conf2"
sed -i "s|data_dir: $T/c1|data_dir: $T/c2|" "$T/conf2/10.yaml"
start_agent "$T/conf"; P1=$AGENT_PID
start_agent "$T/conf2"; P2=$AGENT_PID
sleep 3
kill -TERM "$P1" "$P2"; wait "$P1" "$P2"; AGENT_PID=
# the query of docs/outputs/postgresql.md
dup=$(psql_q "$(sed -n '/BEGIN duplicate-agents/,/END duplicate-agents/p' "$SOURCE_DIR/docs/outputs/postgresql.md" | grep -v -- '--' | grep -v '```' | sed 's/mittari_readings/readings/g')")
echo "$dup" | grep -q "^gw-same|" || fail "the documented query does not find the duplicated id: '$dup'"
echo "$dup" | grep -q "^gw-a|" && fail "the documented query blames an agent that is alone: '$dup'"
ok "two agents with one id: found by the documented query"
