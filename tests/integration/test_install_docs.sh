#!/bin/bash
# docs/operations.md's install steps, run as written (the block after its
# "install-steps" marker) into a scratch root, with a real `mittari` user:
# then `check` and a short `run` as that user, the way the systemd unit runs
# the agent (StateDirectory, UMask=0027). Paths are moved under the scratch
# root (/etc/mittari, /usr/share/doc/mittari, the binary and its plugins);
# nothing else in the lines is changed. Issue 9: the documented steps left
# /etc/mittari/conf.d root:root 0750, so the agent's user could not read it,
# and they skipped profiles/.
#
# The user is made by the docs' useradd and removed at the end; a `mittari`
# user that was there before (a real installation) makes the test skip.
. "$(dirname "$0")/lib.sh"
DOC="$SOURCE_DIR/docs/operations.md"
MARK="(test_install_docs, remove)"

[ "$(id -u)" = 0 ] || { echo "skip: needs root (useradd, runuser)"; exit 77; }
for c in useradd userdel runuser openssl flock; do
  command -v "$c" >/dev/null || fail "$c missing (packaging/dev/deps.sh installs it)"
done
# one run at a time on this machine: the user name is global
exec 9>/run/lock/mittari-test-install-docs.lock
flock -w 600 9 || fail "another run holds the lock"
if id mittari >/dev/null 2>&1; then
  if [ "$(getent passwd mittari | cut -d: -f5)" = "$MARK" ]; then
    userdel mittari 2>/dev/null; groupdel mittari 2>/dev/null  # left by a killed run
  else
    echo "skip: a real 'mittari' user exists on this machine"; exit 77
  fi
fi
getent group mittari >/dev/null && { echo "skip: a 'mittari' group exists on this machine"; exit 77; }

# a scratch root the mittari user can walk through
R=$(mktemp -d /tmp/mittari-install.XXXXXX)
chmod 755 "$R"
RUN_PID= AGENT=
remove_all() {
  # the agent (its pid from its pid file) and the runuser waiting for it
  [ -n "$AGENT" ] && kill -9 "$AGENT" 2>/dev/null
  [ -n "$RUN_PID" ] && kill -9 "$RUN_PID" 2>/dev/null
  [ -n "$RUN_PID" ] && wait "$RUN_PID" 2>/dev/null
  userdel mittari 2>/dev/null
  getent group mittari >/dev/null && groupdel mittari
  rm -rf "$R"
  cleanup
}
trap remove_all EXIT

cmake --install "$BUILD_DIR" --prefix "$R/usr" >/dev/null || fail "cmake --install"
BIN=$R/usr/bin/mittari
PLUG=$(dirname "$(find "$R/usr" -path '*/mittari/plugins/sim.so' | head -1)")
[ -x "$BIN" ] && [ -f "$PLUG/sim.so" ] || fail "install: no binary or plugins"
[ -f "$R/usr/share/doc/mittari/examples/conf.d/profiles/adam-6051.yaml" ] || fail "install: no example profiles"

# the documented lines, with paths moved into the scratch root
awk '/<!-- install-steps/ {m = 1; next} m && /^```/ {n++; if (n == 2) exit; next} m && n == 1' "$DOC" >"$T/steps.doc"
[ "$(wc -l <"$T/steps.doc")" -ge 5 ] || fail "no install-steps block in docs/operations.md"
grep -q '^useradd .* mittari$' "$T/steps.doc" || fail "the steps do not create the user"
sed -e "s#/etc/mittari#$R/etc/mittari#g" \
    -e "s#/usr/share/doc/mittari#$R/usr/share/doc/mittari#g" \
    -e "s#-- mittari #-- $BIN --plugin-dir $PLUG #g" "$T/steps.doc" >"$T/steps.sh"
echo "usermod -c '$MARK' mittari" >"$T/mark.sh"
# the user is marked as soon as it exists, so a killed run is recognised
sed -i "/^useradd /r $T/mark.sh" "$T/steps.sh"
( cd "$R" && bash -euo pipefail -x "$T/steps.sh" ) >"$T/steps.out" 2>&1 || {
  cat "$T/steps.out"; fail "the documented install steps failed"; }

# what they left: root-owned, readable by the group mittari only
owner_mode() { stat -c '%U:%G %a' "$1"; }
for d in etc/mittari etc/mittari/conf.d etc/mittari/conf.d/profiles; do
  [ "$(owner_mode "$R/$d")" = "root:mittari 750" ] || fail "/$d: $(owner_mode "$R/$d")"
done
n=0
for f in "$R"/etc/mittari/conf.d/*.yaml "$R"/etc/mittari/conf.d/profiles/*.yaml; do
  [ "$(owner_mode "$f")" = "root:mittari 640" ] || fail "$f: $(owner_mode "$f")"
  n=$((n + 1))
done
[ "$(ls "$R/etc/mittari/conf.d/profiles" | wc -l)" = "$(ls "$SOURCE_DIR/conf.d/profiles" | wc -l)" ] ||
  fail "not every profile was copied"
[ "$(owner_mode "$R/etc/mittari/pseudonym.key")" = "mittari:mittari 600" ] || fail "key: $(owner_mode "$R/etc/mittari/pseudonym.key")"
grep -q "ok (site demo-library" "$T/steps.out" || fail "the documented check did not say ok"

# the service: StateDirectory=mittari (0750, owned by the user), UMask=0027
STATE=$R/var/lib/mittari
install -d -m 0750 -o mittari -g mittari "$STATE" "$R/run"
as_mittari() { runuser -u mittari -- env MITTARI_DATA_DIR="$STATE" "$@"; }
as_mittari "$BIN" check -c "$R/etc/mittari/conf.d" --plugin-dir "$PLUG" >"$T/check.out" 2>&1 ||
  { cat "$T/check.out"; fail "check as the mittari user"; }
( umask 0027 && as_mittari sh -c 'echo $$ >"$1/pid"; shift; exec "$@"' sh "$R/run" \
    "$BIN" run -c "$R/etc/mittari/conf.d" --plugin-dir "$PLUG" >"$T/run.out" 2>"$T/agent.log" ) &
RUN_PID=$!
wait_for 10 test -s "$R/run/pid" || fail "run did not start"
AGENT=$(cat "$R/run/pid")
wait_for 30 sh -c "grep -c ',demo-library,' '$T/run.out' | grep -qv '^[0-2]$'" ||
  fail "run as the mittari user showed no readings"
wait_for 30 test -s "$STATE/readings.jsonl" || fail "no archive in the state dir"
kill -TERM "$AGENT"
wait "$RUN_PID"; st=$?
RUN_PID= AGENT=
[ "$st" = 0 ] || fail "run as the mittari user: exit $st"
grep -q "cannot\|denied" "$T/agent.log" && fail "run logged a failure: $(grep -m1 'cannot\|denied' "$T/agent.log")"
for f in mittari.db mittari.lock readings.jsonl; do
  [ "$(owner_mode "$STATE/$f")" = "mittari:mittari 640" ] || fail "$f: $(owner_mode "$STATE/$f")"
done
ok "operations.md install steps as written: $n config files root:mittari 0640, check and run as mittari"
