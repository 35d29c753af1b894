#!/bin/bash
# The status page in a real headless browser (Debian's chromium) against a
# running agent fed by sim. sim replays fixed days -- Sunday 2026-03-29,
# when Helsinki moves its clocks forward (a 23-hour day), and the Sunday a
# week before -- so nothing depends on the hour the test runs at. The page
# is loaded for ?day=2026-03-29; the test checks that the health table, the
# outputs table and the charts are there, and that every hourly figure on
# the page equals the log's, counted here independently (sqlite3 and
# Python's zoneinfo). The screenshot is kept as a CI artifact:
# build/artifacts/status-page.png.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
BROWSER=$(command -v chromium || true)
[ -n "$BROWSER" ] || { echo "chromium is not installed"; exit 77; }

mkdir -p "$T/conf"
cat >"$T/conf/10.yaml" <<YAML
agent:
  site: it-library
  data_dir: $T/data
  stats_interval: 0
  timezone: Europe/Helsinki
inputs:
  week-ago:
    plugin: sim
    rate: 0.05
    doors: 2
    opening_hours: "09:00-20:00"
    poll_interval: 1h
    seed: 11
    replay_from: "2026-03-22T00:00"
    replay_until: "2026-03-23T00:00"
  day:
    plugin: sim
    rate: 0.05
    doors: 2
    opening_hours: "00:00-24:00"
    poll_interval: 1h
    seed: 12
    replay_from: "2026-03-28T22:00"
    replay_until: "2026-03-30T02:00"
  museum:
    plugin: sim
    site: it-museum
    rate: 0.03
    doors: 1
    opening_hours: "10:00-18:00"
    poll_interval: 1h
    seed: 13
    replay_from: "2026-03-29T00:00"
    replay_until: "2026-03-30T00:00"
outputs:
  archive:
    type: file
    path: $T/out/readings.jsonl
  broken:                 # cannot create its directory: retries, the page says so
    type: file
    path: /proc/mittari-status-test/readings.jsonl
    retry_min: 100ms
    retry_max: 500ms
status:
  listen: 127.0.0.1:0
  refresh: 2s
YAML

start_agent "$T/conf"
port() { sed -n 's|.*status endpoint on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T/agent.log" | tail -1; }
has_port() { [ -n "$(port)" ]; }
replayed() { [ "$(grep -c 'replayed' "$T/agent.log")" = 3 ]; }
wait_for 20 has_port || fail "the status endpoint did not start"
wait_for 60 replayed || fail "sim did not replay the days"
PORT=$(port)
delivered() {
  $PY -c "
import json, sys, urllib.request
s = json.load(urllib.request.urlopen('http://127.0.0.1:$PORT/status'))
o = {o['name']: o for o in s['outputs']}['archive']
b = {o['name']: o for o in s['outputs']}['broken']
sys.exit(0 if o['backlog'] == 0 and o['delivered'] > 0 and o['cursor'] == s['log']['last_seq']
         and b['last_error_at'] and not b['last_success'] else 1)"
}
wait_for 60 delivered || fail "the archive did not catch up"

run_browser() { # $1: what to do (--dump-dom or --screenshot=FILE)
  timeout 120 "$BROWSER" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-extensions \
    --user-data-dir="$T/profile-$RANDOM" --window-size=1100,1900 --virtual-time-budget=8000 \
    "$1" "http://127.0.0.1:$PORT/?day=2026-03-29" 2>>"$T/browser.log"
}
run_browser --dump-dom >"$T/dom.html" || fail "chromium failed: $(tail -5 "$T/browser.log")"
mkdir -p "$BUILD_DIR/artifacts"
run_browser --screenshot="$BUILD_DIR/artifacts/status-page.png" >/dev/null ||
  fail "no screenshot: $(tail -5 "$T/browser.log")"
[ -s "$BUILD_DIR/artifacts/status-page.png" ] || fail "the screenshot is empty"

$PY - "$T/dom.html" "$T/data/mittari.db" <<'PY' || fail "the page differs from the log"
import collections, datetime, sqlite3, sys, zoneinfo
from html.parser import HTMLParser

dom, db = sys.argv[1], sys.argv[2]

class Page(HTMLParser):
    """Collects the page's tables: rows keyed by their data-* attributes."""
    def __init__(self):
        super().__init__()
        self.stack, self.text = [], None
        self.health = None
        self.inputs, self.outputs = {}, {}
        self.charts = {}  # (site, door) -> {hour: {"day": str, "week_ago": str}}
        self.chart = self.row = self.field = None
        self.bars = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") == "health":
            self.field, self.text = "health", ""
        if tag == "tr" and "data-input" in a:
            self.row = self.inputs.setdefault(a["data-input"], {})
        if tag == "tr" and "data-output" in a:
            self.row = self.outputs.setdefault(a["data-output"], {})
        if tag == "div" and "chart" in a.get("class", "").split():
            self.chart = self.charts.setdefault((a["data-site"], a["data-door"]), {})
        if tag == "tr" and "data-hour" in a and self.chart is not None:
            self.row = self.chart.setdefault(a["data-hour"], {})
        if tag == "td" and self.row is not None:
            self.field, self.text = a.get("data-field", "cell%d" % len(self.row)), ""
        if tag == "rect" and "bar" in a.get("class", ""):
            self.bars += 1
    def handle_data(self, d):
        if self.text is not None:
            self.text += d
    def handle_endtag(self, tag):
        if self.field and tag in ("td", "span"):
            if self.field == "health":
                self.health = self.text.strip()
            else:
                self.row[self.field] = self.text.strip()
            self.field, self.text = None, None
        if tag == "tr":
            self.row = None

p = Page()
p.feed(open(dom).read())
if "data-loaded=\"1\"" not in open(dom).read():
    sys.exit("the page's script did not finish loading (no body[data-loaded])")
if p.health != "degraded":  # the broken output
    sys.exit(f"health badge: {p.health!r}")
if set(p.inputs) != {"week-ago", "day", "museum"}:
    sys.exit(f"inputs table: {sorted(p.inputs)}")
for name, row in p.inputs.items():
    if row.get("cell2") != "up" or not row.get("received", "").replace(",", "").isdigit():
        sys.exit(f"input {name}: {row}")
con = sqlite3.connect(db)
rows = con.execute("select count(*) from readings").fetchone()[0]
arch = p.outputs.get("archive", {})
if arch.get("backlog") != "0" or arch.get("delivered", "").replace(",", "") != str(rows):
    sys.exit(f"outputs table {arch}, the log has {rows} readings")
broken = p.outputs.get("broken", {})
if broken.get("backlog", "").replace(",", "") != str(rows) or \
        not broken.get("cell5", "").startswith("failing, last failure"):
    sys.exit(f"the broken output's row: {broken}")
print(f"ok: health {p.health}; inputs and outputs tables (archive delivered {rows}, "
      f"broken: {broken['cell5']!r})")

# the log's figures: visitors_in per site, door and local hour
tz = zoneinfo.ZoneInfo("Europe/Helsinki")
count = collections.Counter()
for ts, value, site, door in con.execute(
        "select r.ts, r.value, s.site, s.device from readings r join series s on s.id = r.series"
        " where s.metric = 'visitors_in'"):
    t = datetime.datetime.fromtimestamp(ts / 1e6, tz)
    for key in ((site, door), (site, "")):
        count[key + (t.date().isoformat(), "%02d" % t.hour)] += value

expect_sites = {("it-library", ""), ("it-library", "door-1"), ("it-library", "door-2"),
                ("it-museum", ""), ("it-museum", "door-1")}
if set(p.charts) != expect_sites:
    sys.exit(f"charts: {sorted(p.charts)}")
checked = 0
for (site, door), hours in p.charts.items():
    labels = list(hours)
    # 2026-03-29 has no 03 in Helsinki: the column is there for the week-ago day only
    if labels != ["%02d" % h for h in range(24)]:
        sys.exit(f"{site}/{door}: hour columns {labels}")
    for label, cells in hours.items():
        for field, date in (("day", "2026-03-29"), ("week_ago", "2026-03-22")):
            want = count[(site, door, date, label)]
            got = cells[field]
            if date == "2026-03-29" and label == "03":
                if got != "":
                    sys.exit(f"{site}/{door} 03 on the 23-hour day shows {got!r}")
                continue
            if got == "" or float(got) != want:
                sys.exit(f"{site}/{door} {date} {label}: page {got!r}, log {want}")
            checked += 1
day_total = sum(v for k, v in count.items() if k[1] == "" and k[2] == "2026-03-29")
if day_total < 100:
    sys.exit(f"too few visitors to test with: {day_total}")
if p.bars < 100:
    sys.exit(f"only {p.bars} bars drawn")
print(f"ok: {checked} hourly figures on the page equal the log's ({day_total:.0f} visitors on "
      f"2026-03-29), 23-hour day, {p.bars} bars drawn")
PY
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"
ok "status page in chromium matches the log; screenshot in build/artifacts/status-page.png"
