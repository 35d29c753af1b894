#!/usr/bin/env python3
"""Compares a rule's figures in an agent's log with a clean replay of the
log's raw readings through the same script (`mittari rule test` output,
CSV): the figures of every window that ended before CUTOFF must be there,
each with the replay's value as its last revision; no window's figure may be
in the log twice with the same revision; emitted readings (no period tag) must be
the same multiset up to CUTOFF.

usage: rules_compare.py DB RULE REPLAY.csv CUTOFF_ISO
"""
import collections, csv, json, sqlite3, sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

HKI, UTC = ZoneInfo("Europe/Helsinki"), timezone.utc
db, rule, replay, cutoff = sys.argv[1:5]
cutoff = datetime.fromisoformat(cutoff.replace("Z", "+00:00"))


def window_end(start, period):
    if period == "minute":
        return start + timedelta(minutes=1)
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        d = start.astimezone(HKI).date() + timedelta(days=1)
        return datetime(d.year, d.month, d.day, tzinfo=HKI).astimezone(UTC)
    sys.exit("period %s not handled here" % period)


def us_to_dt(us):
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


con = sqlite3.connect(db)
live = {}          # window key -> (revision, value or None)
live_emits = collections.Counter()
revs = set()
n = 0
for site, dev, met, tags, ts, value, flags in con.execute(
        "SELECT s.site, s.device, s.metric, s.tags, r.ts, r.value, r.flags FROM readings r "
        "JOIN series s ON s.id = r.series WHERE s.origin = ? ORDER BY r.seq", (rule,)):
    n += 1
    t = json.loads(tags) if tags else {}
    rev = (flags >> 1) & 0x7f
    v = None if flags & 1 else value
    start = us_to_dt(ts)
    key = (site, dev, met, tags, start)
    if "period" not in t:
        # emitted readings may share a time; the multiset below catches a double
        if start <= cutoff:
            live_emits[(key, v)] += 1
        continue
    if (key, rev) in revs:
        sys.exit("a window's figure in the log twice: %s revision %d" % (key, rev))
    revs.add((key, rev))
    if key not in live or live[key][0] < rev:
        live[key] = (rev, v)
if n == 0:
    sys.exit("the rule wrote nothing to the log: nothing was tested")

want = {}
want_emits = collections.Counter()
for r in csv.DictReader(open(replay)):
    t = json.loads(r["tags"]) if r["tags"] else {}
    start = datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
    v = None if r["suppressed_below"] else float(r["value"])
    key = (r["site"], r["device"], r["metric"], r["tags"], start)
    if "period" not in t:
        if start <= cutoff:
            want_emits[(key, v)] += 1
        continue
    if window_end(start, t["period"]) <= cutoff:
        want[key] = v

bad = 0
for key, v in sorted(want.items()):
    got = live.get(key)
    if got is None:
        print("missing in the log:", key, v)
        bad += 1
    elif got[1] != v:
        print("differs:", key, "log", got, "replay", v)
        bad += 1
    if bad > 10:
        break
for key in live:
    t = json.loads(key[3])
    if window_end(key[4], t["period"]) <= cutoff and key not in want:
        print("in the log, not in the replay:", key, live[key])
        bad += 1
        break
if live_emits != want_emits:
    print("emitted readings differ: log-only", list((live_emits - want_emits).items())[:5],
          "replay-only", list((want_emits - live_emits).items())[:5])
    bad += 1
if not want:
    print("no window ended before the cutoff: nothing to compare")
    bad += 1
if bad:
    sys.exit(1)
corrections = sum(1 for k, r in live.items() if r[0] > 0)
print("%d window figures and %d emitted readings equal the clean replay (%d corrected live)"
      % (len(want), sum(want_emits.values()), corrections))
