#!/bin/bash
# The example rules of scripts/, each replayed with `mittari rule test` over
# readings of a fixed week that includes both Europe/Helsinki DST changes
# (2026-03-29: 23 hours, 2026-10-25: 25 hours), and compared with figures
# computed here independently, in Python with zoneinfo: hourly and daily
# totals per door and site (quiet hours 0), occupancy, unique families per
# service per month and the user-flow matrix suppressed under 5, the daily
# mean feedback per area, trail visitors with their theme. Then: the same
# replay twice is byte for byte the same. No wall clock is involved.
. "$(dirname "$0")/lib.sh"
S=$SOURCE_DIR/scripts
export MITTARI_TZ=Europe/Helsinki

python3 - "$T" <<'PY' || fail "could not make the input"
import csv, json, random, sys
from datetime import datetime, timedelta, timezone
out = sys.argv[1]
rnd = random.Random(20260329)
rows = []
def add(t, site, device, metric, value, kind="delta", subject="", tags=None):
    rows.append((t, site, device, metric, value, kind, subject, json.dumps(tags or {}, sort_keys=True, separators=(",", ":")) if tags else ""))
# three spans of days: around both DST changes and an ordinary week in July
spans = [(datetime(2026, 3, 27, 18, tzinfo=timezone.utc), 80),
         (datetime(2026, 7, 28, 6, tzinfo=timezone.utc), 150),
         (datetime(2026, 10, 23, 18, tzinfo=timezone.utc), 80)]
fam = ["F%02d" % i + "x" * 19 for i in range(40)]           # 22-character pseudonyms
for start, hours in spans:
    t = start
    end = start + timedelta(hours=hours)
    while t < end:
        t += timedelta(seconds=rnd.randint(20, 900))
        hour = t.hour
        if 1 <= hour <= 3 and rnd.random() < 0.9:
            continue                                       # quiet night hours (UTC)
        r = rnd.random()
        site = rnd.choice(["library", "library", "pool"])
        if r < 0.5:
            add(t, site, rnd.choice(["door-1", "door-2"]), rnd.choice(["visitors_in", "visitors_out"]), rnd.randint(1, 3))
        elif r < 0.75:
            svc = rnd.choice(["library", "pool", "museum"])
            f = fam[int(len(fam) * rnd.random() ** 2)]
            add(t, site, "reader", "checkin", 1, "event", f, {"service": svc})
        elif r < 0.9:
            area = {"library": "centre", "pool": "east"}[site]
            add(t, site, "smiley", "feedback", rnd.randint(1, 5), "gauge", "", {"area": area})
        else:
            add(t, rnd.choice(["trail-north", "trail-lake"]), "gate", "visitors_in", rnd.randint(1, 4), "delta", "",
                {"theme": "healthy-lifestyles"})
rows.sort(key=lambda r: r[0])
with open(out + "/in.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["ts", "site", "device", "metric", "value", "kind", "subject", "tags"])
    for t, site, dev, met, val, kind, subj, tags in rows:
        # half with Z, half with the local offset: both are ISO 8601 with a zone
        ts = t.strftime("%Y-%m-%dT%H:%M:%SZ") if rnd.random() < 0.5 else \
            t.astimezone(timezone(timedelta(hours=3))).isoformat()
        w.writerow([ts, site, dev, met, val, kind, subj, tags])
print(len(rows), "readings")
PY

# expected figures of one script, computed in Python (zoneinfo); compared
# with the rule's CSV output as sets of (start, site, device, metric, tags,
# value). The replay sees what the configuration's series glob would give it.
check() {
    local script=$1 glob=$2
    "$MITTARI" rule test "$S/$script.lua" --input "$T/in.csv" --series "$glob" --format csv \
        --site gw >"$T/$script.csv" 2>"$T/$script.err"
    local st=$?
    [ $st = 0 ] || { cat "$T/$script.err"; fail "$script: exit $st"; }
    python3 - "$T/in.csv" "$T/$script.csv" "$script" "$glob" <<'PY' || fail "$script: figures differ"
import bisect, csv, fnmatch, json, sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
HKI, UTC = ZoneInfo("Europe/Helsinki"), timezone.utc
FORGET = timedelta(days=31)   # forget_after: a quiet group gets 0s this long
inp, outp, script, glob = sys.argv[1:]
def parse(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)
R = []
for r in csv.DictReader(open(inp)):
    if not fnmatch.fnmatchcase("%s/%s/%s" % (r["site"], r["device"], r["metric"]), glob):
        continue
    r["t"] = parse(r["ts"]); r["value"] = float(r["value"])
    r["tags"] = json.loads(r["tags"]) if r["tags"] else {}
    R.append(r)
fed_last = max(r["t"] for r in R)

# local windows, independently: Helsinki hours are UTC hours (whole-hour
# offsets); days and months start at local midnight, 23 or 25 hours apart
hour = (lambda t: t.replace(minute=0, second=0, microsecond=0), lambda s: s + timedelta(hours=1))
minute = (lambda t: t.replace(second=0, microsecond=0), lambda s: s + timedelta(minutes=1))
def _day(t):
    d = t.astimezone(HKI).date()
    return datetime(d.year, d.month, d.day, tzinfo=HKI).astimezone(UTC)
day = (_day, lambda s: _day(s.astimezone(HKI).replace(hour=12) + timedelta(days=1)))
def _month(t):
    l = t.astimezone(HKI)
    return datetime(l.year, l.month, 1, tzinfo=HKI).astimezone(UTC)
def _next_month(s):
    l = s.astimezone(HKI)
    y, m = (l.year + 1, 1) if l.month == 12 else (l.year, l.month + 1)
    return datetime(y, m, 1, tzinfo=HKI).astimezone(UTC)
month = (_month, _next_month)

def fmt(v):
    return None if v is None else (int(v) if v == int(v) else round(v, 9))
def key(start, site, device, metric, tags, value):
    return (start.strftime("%Y-%m-%dT%H:%M:%S"), site, device, metric,
            json.dumps(tags, sort_keys=True, separators=(",", ":")), fmt(value))

def cells(adds, unit, end, forget=FORGET):
    """adds: {group: [(t, x)]} -> {(group, start): [x...]}: the windows with
    readings, and quiet ones (empty) while the group is alive: seen before
    the window ends and no longer than forget_after before it starts"""
    start_of, next_of = unit
    out = {}
    for g, v in adds.items():
        ts = [t for t, _ in v]
        s = start_of(ts[0])
        while s < end:
            e = next_of(s)
            i = bisect.bisect_left(ts, e)
            if i and ts[i - 1] >= s - forget:
                out[(g, s)] = []
            s = e
        for t, x in v:
            out[(g, start_of(t))].append(x)
    return out

def last_end(unit, adds):
    start_of, next_of = unit
    return next_of(start_of(max(t for v in adds.values() for t, _ in v)))

want = set()
if script in ("door-visitors", "visitors"):
    h = defaultdict(list); d = defaultdict(list)
    for r in R:
        if script == "door-visitors" or r["metric"] == "visitors_in":
            h[(r["site"], r["device"])].append((r["t"], r["value"]))
            d[r["site"]].append((r["t"], r["value"]))
    end = max(fed_last, last_end(hour, h), last_end(day, d) if script == "visitors" else fed_last)
    for ((site, dev), s), v in cells(h, hour, end).items():
        want.add(key(s, site, dev, "visitors_hourly", {"period": "hour"}, sum(v)))
    if script == "visitors":
        for (site, s), v in cells(d, day, end).items():
            want.add(key(s, site, "visitors", "visitors_daily", {"period": "day"}, sum(v)))
elif script == "visitors-minute":
    m = defaultdict(list)
    for r in R:
        m[(r["site"], r["device"])].append((r["t"], r["value"]))
    for ((site, dev), s), v in cells(m, minute, max(fed_last, last_end(minute, m)),
                                     forget=timedelta(hours=1)).items():
        want.add(key(s, site, dev, "visitors_minute", {"period": "minute"}, sum(v)))
elif script == "occupancy":
    inside, today, peak = {}, {}, defaultdict(list)
    for r in R:
        if r["metric"] not in ("visitors_in", "visitors_out"):
            continue
        site, dd = r["site"], r["t"].astimezone(HKI).date()
        if today.get(site) != dd:
            today[site], inside[site] = dd, 0
        n = inside[site] + r["value"] if r["metric"] == "visitors_in" else max(0, inside[site] - r["value"])
        inside[site] = n
        want.add((r["t"].strftime("%Y-%m-%dT%H:%M:%S"), site, "all-doors", "occupancy", "", fmt(n)))
        peak[site].append((r["t"], n))
    for (site, s), v in cells(peak, day, max(fed_last, last_end(day, peak))).items():
        if v:   # the max of nothing is no figure
            want.add(key(s, site, "occupancy", "occupancy_peak", {"period": "day"}, max(v)))
elif script in ("families-monthly", "user-flows"):
    adds = defaultdict(list)
    for r in R:
        if r["subject"]:
            adds[r["tags"].get("service")].append((r["t"], r["subject"]))
    c = cells(adds, month, max(fed_last, last_end(month, adds)))
    for (svc, s), v in c.items():
        n = len(set(v))
        want.add(key(s, "gw", script, "families", {"period": "month", "service": svc}, None if n < 5 else n))
    if script == "user-flows":
        for (a, s), va in c.items():
            for (b, s2), vb in c.items():
                if s2 == s and a != b:
                    n = len(set(va) & set(vb))
                    want.add(key(s, "gw", script, "families_also",
                                 {"also": b, "period": "month", "service": a}, None if n < 5 else n))
elif script == "feedback-daily":
    adds = defaultdict(list)
    for r in R:
        adds[r["tags"].get("area")].append((r["t"], r["value"]))
    for (area, s), v in cells(adds, day, max(fed_last, last_end(day, adds))).items():
        tags = {"area": area, "period": "day"}
        if v:   # the mean of nothing is no figure; fewer than 5 answers: suppressed
            want.add(key(s, "gw", script, "feedback_mean", tags, None if len(v) < 5 else sum(v) / len(v)))
        want.add(key(s, "gw", script, "feedback_answers", tags, None if len(v) < 5 else len(v)))
elif script == "trail-visitors":
    adds = defaultdict(list)
    for r in R:
        adds[(r["site"], r["tags"].get("theme"))].append((r["t"], r["value"]))
    for ((site, theme), s), v in cells(adds, day, max(fed_last, last_end(day, adds))).items():
        want.add(key(s, site, script, "trail_visitors", {"period": "day", "theme": theme}, sum(v)))
else:
    sys.exit("no expectations for " + script)

got = set()
n = 0
for r in csv.DictReader(open(outp)):
    n += 1
    if r["revision"] != "0":
        sys.exit("a correction in a replay of readings in order: %s" % r)
    if r["suppressed_below"] not in ("", "5"):
        sys.exit("threshold %s" % r["suppressed_below"])
    if r["origin"] != script:
        sys.exit("origin %s" % r["origin"])
    v = None if r["suppressed_below"] else float(r["value"])
    tags = json.loads(r["tags"]) if r["tags"] else {}
    start = parse(r["ts"])
    if not tags.get("period"):
        got.add((start.strftime("%Y-%m-%dT%H:%M:%S"), r["site"], r["device"], r["metric"], "", fmt(v)))
    else:
        got.add(key(start, r["site"], r["device"], r["metric"], tags, v))
if n != len(got):
    sys.exit(f"{n - len(got)} figures twice")
missing, extra = sorted(want - got), sorted(got - want)
if missing or extra:
    print("missing (first 8):", missing[:8]); print("extra (first 8):", extra[:8])
    sys.exit(1)
print(f"{script}: {len(got)} figures as computed independently")
PY
}

check door-visitors '*/door-*/visitors_in'
check visitors-minute '*/door-*/visitors_in'
check visitors '*/door-*/*'
check occupancy '*/door-*/*'
check families-monthly '*/*/checkin'
check user-flows '*/*/checkin'
check feedback-daily '*/*/feedback'
check trail-visitors 'trail-*/*/visitors_in'

# the DST days are in there: 23 and 25 hourly figures for a door that reported
grep -c '^[0-9]*,0,2026-10-2[45]T2[12]:00:00.000000Z,library,door-1,visitors_hourly' "$T/door-visitors.csv" >/dev/null || fail "autumn day missing"
n=$(awk -F, '$3 >= "2026-10-24T21:00" && $3 < "2026-10-25T22:00" && $5 == "door-1" && $4 == "library"' "$T/door-visitors.csv" | wc -l)
[ "$n" = 25 ] || fail "the autumn Sunday has $n hourly figures for library door-1, not 25"
n=$(awk -F, '$3 >= "2026-03-28T22:00" && $3 < "2026-03-29T21:00" && $5 == "door-1" && $4 == "library"' "$T/door-visitors.csv" | wc -l)
[ "$n" = 23 ] || fail "the spring Sunday has $n hourly figures for library door-1, not 23"
ok "example rules give the independently computed figures, DST days included"

# deterministic: byte for byte, twice, in every format (the Lua string hash
# seed differs from run to run; the output may not)
for fmt in csv jsonl table; do
    "$MITTARI" rule test "$S/user-flows.lua" --input "$T/in.csv" --format $fmt >"$T/a.$fmt" 2>/dev/null
    "$MITTARI" rule test "$S/user-flows.lua" --input "$T/in.csv" --format $fmt >"$T/b.$fmt" 2>/dev/null
    cmp -s "$T/a.$fmt" "$T/b.$fmt" || fail "two replays differ ($fmt)"
done
cat >"$T/pairs.lua" <<'LUA'
-- emits in pairs() order, which Lua varies from run to run
local names = {}
for i = 1, 200 do names["k" .. i] = i end
function on_reading(r)
  for k, v in pairs(names) do
    if v % 50 == r.value % 50 then emit { metric = "m" .. v, value = v, device = k } end
  end
end
LUA
"$MITTARI" rule test "$T/pairs.lua" --input "$T/in.csv" --format csv >"$T/p1" 2>/dev/null
"$MITTARI" rule test "$T/pairs.lua" --input "$T/in.csv" --format csv >"$T/p2" 2>/dev/null
cmp -s "$T/p1" "$T/p2" || fail "pairs() order leaked into the output"
[ "$(wc -l <"$T/p1")" -gt 100 ] || fail "pairs test emitted too little"
ok "replays are byte for byte the same"

# JSON Lines in (what query writes) gives the same figures as CSV in
python3 - "$T/in.csv" "$T/in.jsonl" <<'PY'
import csv, json, sys
with open(sys.argv[2], "w") as out:
    for i, r in enumerate(csv.DictReader(open(sys.argv[1])), 1):
        o = {"seq": i, "gen": 1, "ts": r["ts"], "site": r["site"], "device": r["device"],
             "metric": r["metric"], "value": float(r["value"]), "kind": r["kind"]}
        if r["subject"]: o["subject"] = r["subject"]
        if r["tags"]: o["tags"] = json.loads(r["tags"])
        out.write(json.dumps(o) + "\n")
PY
"$MITTARI" rule test "$S/user-flows.lua" --input "$T/in.jsonl" --series '*/*/checkin' --format csv --site gw >"$T/j.csv" 2>/dev/null
cmp -s "$T/j.csv" "$T/user-flows.csv" || fail "JSON Lines input gives other figures than CSV"
ok "JSON Lines input"
