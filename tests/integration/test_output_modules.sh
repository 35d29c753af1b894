#!/bin/bash
# Output modules (agent/outmod.h), loaded for real by the built agent:
#   1. the executable links none of the outputs' client libraries, exports
#      exactly agent/outputs/host.syms, and every agent symbol a module
#      needs is among them;
#   2. an agent with only a file output maps no module and none of libcurl,
#      libmosquitto, libpq, OpenSSL, GnuTLS; a SIGHUP that adds an http
#      output loads output-http.so (and libcurl), not the other two, and the
#      receiver gets readings;
#   3. `mittari plugins` lists file (built in) and the three modules;
#      `plugins TYPE --markdown` prints a module's options;
#   4. `check` (exit 3) and `run` (exit 3, nothing started) refuse, naming
#      the type and the file: a module not installed, one of another build
#      (its interface id differs), one that needs an agent function the
#      executable does not export, one whose library is missing (with the
#      packages to install); `plugins NAME` says the same (exit 1); a
#      misspelt type gets a did-you-mean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/outputs_lib.sh"

P=(--plugin-dir "$BUILD_DIR/plugins")
MODS="http mqtt postgresql"
CLIENT_LIBS='libcurl|libmosquitto|libpq|libssl|libcrypto|libgnutls|libz\.so'

# ---- 1. the executable ---------------------------------------------------
readelf -d "$MITTARI" | grep NEEDED >"$T/needed"
grep -E "$CLIENT_LIBS" "$T/needed" && fail "mittari itself links an output's library"
nm -D --defined-only "$MITTARI" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort >"$T/exported"
sed -n 's/^ *\(mt_[a-z0-9_]*\);.*/\1/p' "$SOURCE_DIR/agent/outputs/host.syms" | sort >"$T/listed"
[ -s "$T/listed" ] || fail "no symbols in host.syms"
diff "$T/listed" <(grep '^mt_' "$T/exported") >&2 || fail "the executable does not export exactly host.syms"
: >"$T/needs"
for m in $MODS; do
  f="$BUILD_DIR/plugins/output-$m.so"
  [ -f "$f" ] || fail "no $f"
  nm -D --undefined-only "$f" | awk '{print $2}' | grep '^mt_' >>"$T/needs"
done
missing=$(sort -u "$T/needs" | comm -23 - "$T/listed")
[ -z "$missing" ] || fail "modules need agent functions host.syms does not export: $missing"
unused=$(sort -u "$T/needs" | comm -13 - "$T/listed")
[ -z "$unused" ] || fail "host.syms exports what no module needs: $unused"

# ---- 2. what a running agent maps ----------------------------------------
R=$T/recv
http_receiver "$R"
mkdir -p "$T/conf"
agent_yaml() {
  cat <<YAML
agent:
  site: it-mod
  data_dir: $T/data
  stats_interval: 0
inputs:
  sim:
    plugin: sim
    rate: 50
    opening_hours: "00:00-24:00"
    poll_interval: 100ms
outputs:
  archive:
    type: file
    path: $T/out.jsonl
YAML
}
agent_yaml >"$T/conf/10.yaml"
start_agent "$T/conf"
wait_for 20 test -s "$T/out.jsonl" || fail "the file output wrote nothing"
maps=$(cat "/proc/$AGENT_PID/maps")
grep -E "$CLIENT_LIBS|output-" <<<"$maps" | awk '{print $6}' | sort -u >"$T/mapped"
[ -s "$T/mapped" ] && fail "an agent with a file output maps: $(tr '\n' ' ' <"$T/mapped")"
nlibs=$(awk '$6 ~ /\.so/ {print $6}' <<<"$maps" | sort -u | wc -l)

{ agent_yaml; cat <<YAML
  wh:
    type: http
    url: http://127.0.0.1:$HTTP_PORT/ingest
    batch_size: 20
YAML
} >"$T/conf/10.yaml"
kill -HUP "$AGENT_PID"
wait_for 20 bash -c "[ \$(cat '$R/records.jsonl' 2>/dev/null | wc -l) -ge 20 ]" ||
  fail "after the reload, no readings reached the http output"
maps=$(cat "/proc/$AGENT_PID/maps")
grep -q "/output-http\.so$" <<<"$maps" || fail "output-http.so is not mapped"
grep -q "libcurl" <<<"$maps" || fail "libcurl is not mapped with the http output"
grep -qE "output-(mqtt|postgresql)\.so|libmosquitto|libpq" <<<"$maps" && fail "an unused module or its library is mapped"
nlibs_http=$(awk '$6 ~ /\.so/ {print $6}' <<<"$maps" | sort -u | wc -l)
stop_agent TERM
[ "$AGENT_STATUS" = 0 ] || fail "exit status $AGENT_STATUS"

# ---- 3. the listing ------------------------------------------------------
"$MITTARI" plugins "${P[@]}" >"$T/plugins.out" 2>&1 || { cat "$T/plugins.out"; fail "mittari plugins"; }
grep -qE "^  file +builtin " "$T/plugins.out" || fail "plugins: no file builtin"
for m in $MODS; do
  grep -qE "^  $m +module +[A-Z]" "$T/plugins.out" || fail "plugins does not list the $m module"
  "$MITTARI" plugins "$m" --markdown "${P[@]}" | grep -q '^| `' || fail "plugins $m --markdown"
done
"$MITTARI" --version | grep -qx "output module interface [0-9.]*/[0-9a-f]\{16\}" || fail "--version: no interface id"
id=$("$MITTARI" --version | sed -n 's/^output module interface //p')

# ---- 4. modules that cannot be used --------------------------------------
# refused CASE DIR PATTERN...: with DIR first in plugin_path and an http
# output, check and run exit 3 and say each PATTERN
refused() {
  local name=$1 dir=$2; shift 2
  cat >"$T/bad/10.yaml" <<YAML
agent:
  site: it-mod
  data_dir: $T/bad-data
  plugin_path: $dir
outputs:
  wh:
    type: http
    url: http://127.0.0.1:1/x
YAML
  local st=0
  "$MITTARI" check -c "$T/bad" "${P[@]}" >"$T/$name.out" 2>&1 || st=$?
  [ "$st" = 3 ] || { cat "$T/$name.out"; fail "$name: check exit $st, expected 3"; }
  grep -q "output 'wh' (type http)\|output 'wh': output type http" "$T/$name.out" || { cat "$T/$name.out"; fail "$name: the output is not named"; }
  for pat in "$@"; do
    grep -qF -- "$pat" "$T/$name.out" || { cat "$T/$name.out"; fail "$name: check does not say '$pat'"; }
  done
  st=0
  timeout 20 "$MITTARI" run -c "$T/bad" "${P[@]}" >"$T/$name.run" 2>&1 || st=$?
  [ "$st" = 3 ] || { cat "$T/$name.run"; fail "$name: run exit $st, expected 3"; }
  [ -e "$T/bad-data/mittari.db" ] && fail "$name: run started anyway"
  st=0
  "$MITTARI" plugins http -c "$T/bad" "${P[@]}" >"$T/$name.pl" 2>&1 || st=$?
  [ "$st" = 1 ] && grep -qF -- "$1" "$T/$name.pl" || { cat "$T/$name.pl"; fail "$name: plugins http exit $st"; }
}
mkdir -p "$T/bad" "$T/empty" "$T/foreign" "$T/noexport" "$T/nolib"

# not installed: a plugin dir without it
mkdir -p "$T/only-sim" && ln -s "$BUILD_DIR/plugins/sim.so" "$T/only-sim/"
cat >"$T/bad/10.yaml" <<YAML
agent:
  site: it-mod
  data_dir: $T/bad-data
outputs:
  wh:
    type: http
    url: http://127.0.0.1:1/x
YAML
st=0
"$MITTARI" check -c "$T/bad" --plugin-dir "$T/only-sim" >"$T/missing.out" 2>&1 || st=$?
[ "$st" = 3 ] || { cat "$T/missing.out"; fail "missing module: check exit $st"; }
grep -qF "output 'wh': output type http: its module output-http.so is in none of $T/only-sim" "$T/missing.out" ||
  { cat "$T/missing.out"; fail "missing module: message"; }

# another build: the same module with another interface id
python3 - "$BUILD_DIR/plugins/output-http.so" "$T/foreign/output-http.so" "$id" <<'PY'
import sys
src, dst, ident = sys.argv[1], sys.argv[2], sys.argv[3].encode()
data = open(src, "rb").read()
assert data.count(ident) == 1, "the id is not in the module once"
other = ident[:-16] + bytes(b"0123456789abcdef"[(b"0123456789abcdef".index(c) + 1) % 16] for c in ident[-16:])
open(dst, "wb").write(data.replace(ident, other))
PY
refused foreign "$T/foreign" "module $T/foreign/output-http.so refused: built for mittari 0.1." "this agent is $id"

# a module that calls an agent function the executable does not export
cat >"$T/noexport.c" <<'C'
int mt_log_generation(void *log);
int mt_output_module(void) { return mt_log_generation(0); }
C
cc -shared -fPIC -o "$T/noexport/output-http.so" "$T/noexport.c" || fail "cc"
refused noexport "$T/noexport" "cannot load its module $T/noexport/output-http.so" \
  "undefined symbol: mt_log_generation" "another mittari build"

# a library it needs is missing (the real module, its libcurl renamed)
python3 - "$BUILD_DIR/plugins/output-http.so" "$T/nolib/output-http.so" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert b"libcurl.so.4\0" in data
open(sys.argv[2], "wb").write(data.replace(b"libcurl.so.4\0", b"libcurX.so.4\0"))
PY
refused nolib "$T/nolib" "cannot load its module $T/nolib/output-http.so: libcurX.so.4: cannot open shared object file" \
  "apt-get install libcurl4"

# a misspelt type
sed -i 's/type: http/type: htp/' "$T/bad/10.yaml"
"$MITTARI" check -c "$T/bad" "${P[@]}" >"$T/typo.out" 2>&1 && fail "check passed type htp"
grep -q "unknown output type 'htp'" "$T/typo.out" && grep -q "did you mean 'http'?" "$T/typo.out" ||
  { cat "$T/typo.out"; fail "typo: no did-you-mean"; }

ok "output modules: none mapped with a file output ($nlibs libraries), http loaded on reload ($nlibs_http), listed, refused clearly when missing, foreign, unexported or without their library"
