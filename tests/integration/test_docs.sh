#!/bin/bash
# Docs that agree with the code:
# - the option tables in docs/ are generated from the code's option tables
#   and fail when out of date (run docs/generate.sh to fix);
# - every option key in a YAML example of README.md and docs/ exists in the
#   option table it belongs to (an input's plugin, an output's type, the
#   agent section; a profile's keys in some plugin's table), as do the keys
#   of inline `key: value` snippets that name an option (issue 9: a profile
#   example said word_order, the key is order);
# - every counter a doc names (the "| counter |" tables, "`name` counter")
#   is counted somewhere in the code.
. "$(dirname "$0")/lib.sh"
MITTARI="$MITTARI" PLUGIN_DIR="$BUILD_DIR/plugins" "$SOURCE_DIR/docs/generate.sh" --check || fail "docs out of date: run docs/generate.sh"
n=$(grep -c "<!-- options: " "$SOURCE_DIR"/docs/*.md "$SOURCE_DIR"/docs/*/*.md | awk -F: '{s+=$2} END {print s}')
[ "$n" -ge 4 ] || fail "only $n generated tables found"
# README's first lines are the two commands
head -5 "$SOURCE_DIR/README.md" | grep -q '^./packaging/dev/demo.sh' || fail "README: demo command"
head -5 "$SOURCE_DIR/README.md" | grep -q '^./tests/run.sh' || fail "README: test command"
grep -q 'tests/run.sh' "$SOURCE_DIR/.ci/run" || fail ".ci/run does not call the README's test command"

# the option names of every table, as the CLI prints them (markdown rows)
mkdir -p "$T/tables"
for name in agent status output rules $("$MITTARI" plugins --plugin-dir "$BUILD_DIR/plugins" |
    awk '/^  [a-z_0-9]+ / {print $1}'); do
  "$MITTARI" plugins "$name" --markdown --plugin-dir "$BUILD_DIR/plugins" >"$T/tables/$name" ||
    fail "plugins $name --markdown"
done
[ -s "$T/tables/sim" ] && [ -s "$T/tables/file" ] || fail "no option tables printed"
# the SDK example plugin (docs/plugin-sdk.md shows its configuration)
mkdir -p "$T/example"
cc -shared -fPIC -I"$SOURCE_DIR/include" -o "$T/example/heartbeat.so" \
  "$SOURCE_DIR/docs/examples/plugin/heartbeat.c" || fail "the SDK example does not build"
"$MITTARI" plugins heartbeat --markdown --plugin-dir "$T/example" >"$T/tables/heartbeat" ||
  fail "plugins heartbeat --markdown"

python3 - "$SOURCE_DIR" "$T/tables" <<'PY' || fail "docs name keys or counters the code does not have"
import glob, os, re, sys
src, tables = sys.argv[1], sys.argv[2]

# table name -> option names (leaf names; list items' keys too; NAME_file for secrets)
opts = {}
for path in glob.glob(os.path.join(tables, "*")):
    names = set()
    for line in open(path):
        for m in re.finditer(r"`([a-z0-9_\[\].]+)`", line.split("|")[1] if line.startswith("| `") else ""):
            names.add(m.group(1).split(".")[-1].replace("[]", ""))
    opts[os.path.basename(path)] = names
outputs = {"file"}
reserved_in = {"plugin", "site", "tags", "enabled", "isolate", "profile"}
reserved_out = {"type", "enabled"} | opts["output"]
reserved_rule = {"series", "where", "from", "tags", "enabled"}
sections = {"agent", "inputs", "outputs", "rules", "status"}
every = set().union(*opts.values()) | reserved_in | reserved_out | reserved_rule
problems = []

KEY = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z_][A-Za-z0-9_.-]*):(?:\s|$)")
FLOWKEY = re.compile(r"(?:^|[{,]\s*)([A-Za-z_][A-Za-z0-9_]*):\s")

def strip(line):
    line = re.sub(r"\s#.*$", "", line)                    # comments
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "''", line)      # quoted text
    return re.sub(r"tags:\s*\{[^}]*\}", "tags: {}", line)  # tag names are free

def check_block(doc, start, lines):
    # stack of (indent, key); per instance: the allowed names, known once
    # its plugin: or type: line is seen (collected first)
    inst_allowed = {}
    stack = []
    section = None
    for i, raw in enumerate(lines):
        line = strip(raw)
        m = KEY.match(line)
        if m:
            ind = len(m.group(1))
            while stack and stack[-1][0] >= ind:
                stack.pop()
            stack.append((ind, m.group(2), i))
        if len(stack) >= 3 and stack[0][1] in ("inputs", "outputs") and stack[1][0] < stack[2][0]:
            v = re.match(r"^\s*(plugin|type):\s*([a-z0-9_]+)", line)
            if v and len(stack) == 3:
                inst_allowed[(stack[1][2])] = (v.group(1), v.group(2))
    stack = []
    for i, raw in enumerate(lines):
        line = strip(raw)
        m = KEY.match(line)
        keys = []
        if m:
            ind = len(m.group(1))
            while stack and stack[-1][0] >= ind:
                stack.pop()
            stack.append((ind, m.group(2), i))
            keys.append(m.group(2))
        rest = line[m.end():] if m else line
        if not (stack and stack[0][1] == "rules" and m and m.group(2) == "where"):
            keys += FLOWKEY.findall(rest if "{" in rest else "")
        if not stack:
            continue
        if any(e[1] == "tags" for e in (stack[:-1] if m else stack)):
            continue                                         # tag names are free
        if stack[0][1] == "rules" and any(e[1] == "where" for e in (stack[:-1] if m else stack)):
            continue                                         # so are a rule's where keys
        top = stack[0][1]
        for k in keys:
            if len(stack) == 1 and k == top:
                if top in sections:
                    continue
                allowed, what = every, "any option table"   # a profile's keys
            elif top == "rules":
                if len(stack) == 2 and k == stack[1][1]:
                    continue                                 # a rule's name
                allowed, what = opts["rules"] | reserved_rule, "the rules' table"
            elif top == "agent":
                allowed, what = opts["agent"] | {"secret_file"}, "the agent section"
            elif top == "status":
                allowed, what = opts["status"] | {"token_file"}, "the status section"
            elif top in ("inputs", "outputs"):
                if len(stack) == 2 and k == stack[1][1]:
                    continue                                 # an instance name
                kind = inst_allowed.get(stack[1][2]) if len(stack) >= 2 else None
                if kind is None:
                    allowed, what = every, "any option table"
                elif kind[0] == "plugin":
                    allowed, what = opts.get(kind[1], set()) | reserved_in, "plugin " + kind[1]
                else:
                    allowed, what = opts.get(kind[1], set()) | reserved_out, "output type " + kind[1]
            else:
                allowed, what = every, "any option table"
            if k not in allowed:
                problems.append(f"{doc}:{start + i + 1}: key '{k}' is not an option of {what}")

docs = [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md")) +
                                                  glob.glob(os.path.join(src, "docs", "*", "*.md")))
nblocks = 0
for doc in docs:
    text = open(doc).read().split("\n")
    rel = os.path.relpath(doc, src)
    i = 0
    while i < len(text):
        if text[i].strip() == "```yaml":
            j = i + 1
            while j < len(text) and text[j].strip() != "```":
                j += 1
            check_block(rel, i + 1, text[i + 1:j])
            nblocks += 1
            i = j
        i += 1
    # inline snippets `key: value` whose key is an option somewhere or looks like one
    for n, line in enumerate(text, 1):
        if line.startswith("|") or line.startswith("    "):
            continue
        for m in re.finditer(r"`([a-z][a-z0-9_]*): [^`]+`", line):
            k = m.group(1)
            if k not in every and k not in sections:
                problems.append(f"{rel}:{n}: `{m.group(0)[1:-1]}` names no option")

# counters named by docs, and the string literals of the code
code = ""
for path in glob.glob(os.path.join(src, "agent", "**", "*.c"), recursive=True) + \
            glob.glob(os.path.join(src, "plugins", "**", "*.c"), recursive=True):
    code += open(path).read()
literals = set(re.findall(r'"([a-z][a-z0-9_]*)"', code))
ncounters = 0
for doc in docs:
    rel = os.path.relpath(doc, src)
    in_table = False
    for n, line in enumerate(open(doc), 1):
        if re.match(r"^\|\s*counter\s*\|", line):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        names = []
        if in_table and not line.startswith("|---"):
            names = re.findall(r"`([a-z][a-z0-9_]*)`", line.split("|")[1])
        names += re.findall(r"`([a-z][a-z0-9_]*)` counter", line)
        for c in names:
            ncounters += 1
            if c not in literals:
                problems.append(f"{rel}:{n}: counter '{c}' is counted nowhere in agent/ or plugins/")

for p in problems:
    print(p)
print(f"{nblocks} YAML examples, {ncounters} counter names checked")
if nblocks < 10 or ncounters < 20:
    sys.exit("too few examples or counters found: the scan is broken")
sys.exit(1 if problems else 0)
PY
ok "docs generated from the code are current; their keys and counters exist"
