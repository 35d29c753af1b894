#!/bin/bash
# Regenerates the option tables in docs/*.md from the option tables in the
# code, between "<!-- options: NAME -->" and "<!-- end options -->".
#   docs/generate.sh           rewrite the files
#   docs/generate.sh --check   exit 1 if a table is out of date (a test runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
MITTARI=${MITTARI:-build/mittari}
PLUGIN_DIR=${PLUGIN_DIR:-build/plugins}
python3 - "$MITTARI" "$PLUGIN_DIR" "${1:-}" docs/*.md docs/*/*.md <<'PY'
import re, subprocess, sys
mittari, plugin_dir, mode, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
pat = re.compile(r"(<!-- options: (\S+) -->\n)(.*?)(<!-- end options -->)", re.S)
stale = []
for path in files:
    text = open(path).read()
    def table(m):
        out = subprocess.run([mittari, "plugins", m.group(2), "--markdown", "--plugin-dir", plugin_dir],
                             check=True, capture_output=True, text=True).stdout
        return m.group(1) + out + m.group(4)
    new = pat.sub(table, text)
    if new != text:
        stale.append(path)
        if mode != "--check":
            open(path, "w").write(new)
if stale:
    print(("out of date: " if mode == "--check" else "updated: ") + " ".join(stale))
    sys.exit(1 if mode == "--check" else 0)
PY
