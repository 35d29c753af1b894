#!/bin/bash
# The Debian package, installed for real on this machine with dpkg:
#   - built with CPack (packaging/build-deb.sh), twice: revisions 0test1 and
#     0test2 of the same version, for the upgrade;
#   - its Depends: run-time only (RUN_PKGS of deps.sh and libraries, no
#     build or test package), not the output modules' client libraries
#     (libcurl4, libmosquitto1, libpq5): those are its Recommends, and are
#     the packages the agent names when a module cannot be loaded; its
#     conffiles: the production configuration;
#   - dpkg -i: the mittari system user (in dialout, not in input), owners
#     and modes of /etc/mittari (root:mittari 0750, files 0640) and
#     /var/lib/mittari (mittari:mittari 0750), the unit enabled but the
#     service not started while unconfigured (postinst says so), systemd not
#     running as PID 1 (as on CI);
#   - as the mittari user: `mittari check` of the shipped configuration,
#     `mittari plugins` (input plugins and output modules), a configuration
#     with an http, an mqtt and a postgresql output checks (the installed
#     modules load), the commented input examples are valid, the man pages
#     are clean for groff;
#   - the SDK example of the installed docs built out of tree with its
#     Makefile (pkg-config mittari) and with CMake (find_package), loaded
#     from agent.plugin_path by the installed agent run as mittari for a few
#     seconds next to nothing else;
#   - upgrade to 0test2: data, an edited conffile and a local file kept,
#     owners kept; remove: configuration and data kept; purge: the user, the
#     group, /etc/mittari, /var/lib/mittari, the overrides and the unit's
#     enablement gone.
# The machine is left as it was found, also when the test fails (trap).
# Skipped (77) only where there is no dpkg.
. "$(dirname "$0")/lib.sh"

command -v dpkg >/dev/null && command -v dpkg-deb >/dev/null || { echo "skip: no dpkg here"; exit 77; }
[ "$(id -u)" = 0 ] || fail "needs root: dpkg -i, a system user (CI runs as root)"
for c in runuser dpkg-statoverride cpack make groff; do
  command -v "$c" >/dev/null || fail "$c missing (packaging/dev/deps.sh installs it)"
done

# Tests that make the system user `mittari` take turns on this machine
# (tests/integration/test_install_docs.sh takes the same lock).
mkdir -p /run/lock
exec 9>/run/lock/mittari-test-install-docs.lock
flock -w 900 9 || fail "another test holds the mittari user lock"

REV1=0test1 REV2=0test2
pkg_state() { dpkg-query -W -f='${db:Status-Status} ${Version}' mittari 2>/dev/null || true; }
# a package of an earlier run of this test that was killed is ours to remove;
# anything else named mittari on this machine is not
case "$(pkg_state)" in
"" | "not-installed "*) ;;
*" 0.1."*"-0test"*) dpkg --purge mittari >/dev/null 2>&1 || true ;;
*) fail "a mittari package is installed here ($(pkg_state)); the test would replace it" ;;
esac
if id mittari >/dev/null 2>&1; then
  if [ "$(getent passwd mittari | cut -d: -f5)" = "(test_install_docs, remove)" ]; then
    userdel mittari 2>/dev/null; groupdel mittari 2>/dev/null  # left by a killed test_install_docs
  else
    fail "a mittari user exists on this machine; the test would delete it at purge"
  fi
fi
getent group mittari >/dev/null && fail "a mittari group exists on this machine"
for d in /etc/mittari /var/lib/mittari; do
  [ -e "$d" ] && fail "$d exists on this machine; the test would delete it at purge"
done

# W: a work dir the mittari user can read (the example, plugin_path)
W=$(mktemp -d /tmp/mittari-deb.XXXXXX)
chmod 755 "$W"
RUN_PID=
undo() {
  set +e
  [ -n "$RUN_PID" ] && kill -9 "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
  if [ -n "$(pkg_state)" ] && [ "$(pkg_state | cut -d' ' -f1)" != not-installed ]; then
    dpkg --purge mittari >"$T/undo.out" 2>&1 || cat "$T/undo.out" >&2
  fi
  # what a purge that failed half-way may have left
  for p in $(dpkg-statoverride --list 2>/dev/null | awk '$4 ~ "^/(etc/mittari|var/lib/mittari)(/|$)" {print $4}'); do
    dpkg-statoverride --remove "$p" >/dev/null 2>&1
  done
  id mittari >/dev/null 2>&1 && userdel mittari
  getent group mittari >/dev/null && groupdel mittari
  rm -rf /etc/mittari /var/lib/mittari "$W"
  cleanup
}
trap undo EXIT

# dpkg ARGS...: dpkg, waiting while another dpkg or apt run holds its lock
dpkg_() {
  local end=$((SECONDS + 300)) out
  while :; do
    if out=$(dpkg "$@" </dev/null 2>&1); then
      printf '%s\n' "$out"
      return 0
    fi
    if ! grep -q "lock" <<<"$out" || [ $SECONDS -ge $end ]; then
      printf '%s\n' "$out" >&2
      return 1
    fi
    sleep 2
  done
}
owner_mode() { stat -c '%U:%G %a' "$1"; }
expect_om() { [ "$(owner_mode "$1")" = "$2" ] || fail "$1: $(owner_mode "$1"), expected $2"; }
as_mittari() { runuser -u mittari -- "$@"; }

# ---- build ---------------------------------------------------------------
DEB_BUILD="$BUILD_DIR/deb"
deb1=$("$SOURCE_DIR/packaging/build-deb.sh" "$DEB_BUILD" "$REV1" | tail -1) || fail "build-deb.sh $REV1"
cp "$deb1" "$W/" && deb1="$W/$(basename "$deb1")"
deb2=$("$SOURCE_DIR/packaging/build-deb.sh" "$DEB_BUILD" "$REV2" | tail -1) || fail "build-deb.sh $REV2"
[ -f "$deb1" ] && [ -f "$deb2" ] || fail "no .deb built"

# ---- what the package declares -------------------------------------------
depends=$(dpkg-deb -f "$deb1" Depends)
deps_list() { bash -c "$(sed -n "/^$1=(/,/^)/p" "$SOURCE_DIR/packaging/dev/deps.sh"); echo \"\${$1[@]}\""; }
run_pkgs=$(deps_list RUN_PKGS)
[ -n "$run_pkgs" ] || fail "no RUN_PKGS list in packaging/dev/deps.sh"
for p in $run_pkgs; do
  grep -qE "(^|, )$p( |,|$)" <<<"$depends" || fail "Depends lacks run-time package $p: $depends"
done
for p in $(deps_list BUILD_PKGS) $(deps_list TEST_PKGS); do
  grep -qE "(^|, )$p( |,|$)" <<<"$depends" && fail "Depends names build/test package $p: $depends"
done
for lib in libuv1 libsqlite3-0 libyaml-0-2 liblua5.4-0 libsodium23 libmodbus5; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (dpkg-shlibdeps): $depends"
done
recommends=$(dpkg-deb -f "$deb1" Recommends)
for lib in libcurl4 libmosquitto1 libpq5; do
  grep -q "$lib" <<<"$depends" && fail "Depends names $lib, which only an output module needs: $depends"
  grep -q "$lib" <<<"$recommends" || fail "Recommends lacks $lib: $recommends"
  # the agent's hint names the same packages (CMakeLists.txt, mittari_output_module DEB)
  grep -q "$lib" "$BUILD_DIR/generated/mt_output_modules.h" || fail "the agent's hints do not name $lib"
done
for lib in $(sed 's/ ([^)]*)//g; s/,/ /g' <<<"$recommends"); do
  grep -q "\"[a-z]*\", \"[^\"]*\b$lib\b" "$BUILD_DIR/generated/mt_output_modules.h" ||
    fail "Recommends has $lib, which no module's hint names"
done
dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles >"$T/conffiles" || fail "no conffiles"
for f in 10-agent.yaml 20-inputs.yaml 30-outputs.yaml profiles/adam-6051.yaml; do
  grep -qx "/etc/mittari/conf.d/$f" "$T/conffiles" || fail "not a conffile: $f"
done
dpkg-deb -c "$deb1" >"$T/contents"
grep -q " ./usr/share/doc/mittari/examples/plugin/heartbeat.c$" "$T/contents" || fail "SDK example not packaged"
dpkg-deb --fsys-tarfile "$deb1" | tar -xO ./etc/mittari/conf.d >"$T/prod.yaml" 2>/dev/null
grep -v '^ *#' "$T/prod.yaml" | grep -q "plugin: sim\|path: \"-\"" && fail "the production configuration runs sim or writes to the console"

# ---- install -------------------------------------------------------------
[ -d /run/systemd/system ] && echo "note: systemd runs here; the unit is not started while unconfigured"
dpkg_ -i "$deb1" >"$T/install.out" || fail "dpkg -i $deb1"
grep -q "installed and enabled, but not started: not configured yet: agent.site is still 'unconfigured'" "$T/install.out" ||
  { cat "$T/install.out"; fail "postinst did not say why the service is not started"; }
[ "$(pkg_state)" = "installed 0.1.0-$REV1" ] || fail "package state: $(pkg_state)"

# the user: system, no login, home = data dir, dialout but not input
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd mittari)"
[ "$uid" -lt 1000 ] || fail "mittari is not a system user (uid $uid)"
[ "$home" = /var/lib/mittari ] && [ "$shell" = /usr/sbin/nologin ] || fail "mittari: home $home, shell $shell"
[ "$(getent group mittari | cut -d: -f3)" = "$gid" ] || fail "mittari's primary group is not mittari"
groups=$(id -nG mittari)
grep -qw dialout <<<"$groups" || fail "mittari not in dialout: $groups"
grep -qw input <<<"$groups" && fail "mittari in input by default: $groups"

# owners and modes
for d in /etc/mittari /etc/mittari/conf.d /etc/mittari/conf.d/profiles; do expect_om "$d" "root:mittari 750"; done
n=0
for f in /etc/mittari/conf.d/*.yaml /etc/mittari/conf.d/profiles/*.yaml; do
  expect_om "$f" "root:mittari 640"
  n=$((n + 1))
done
[ "$n" = "$(wc -l <"$T/conffiles")" ] || fail "$n configuration files, $(wc -l <"$T/conffiles") conffiles"
expect_om /var/lib/mittari "mittari:mittari 750"
expect_om /usr/bin/mittari "root:root 755"
expect_om /usr/libexec/mittari/configured "root:root 755"
expect_om /usr/lib/systemd/system/mittari.service "root:root 644"
PLUGDIR=$(realpath "$(pkg-config --variable=plugindir mittari)") || fail "pkg-config mittari"
for p in cardreader feedback modbus serial sim output-http output-mqtt output-postgresql; do
  expect_om "$PLUGDIR/$p.so" "root:root 644"
done
[ -L /etc/systemd/system/multi-user.target.wants/mittari.service ] || fail "the unit is not enabled"

# as the service would: check, plugins, not configured yet
as_mittari mittari check >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "check of the shipped configuration as mittari"; }
grep -q "^/etc/mittari/conf.d: ok (site unconfigured, 0 inputs, 1 outputs, 0 rules)" "$T/check.out" || fail "check: $(cat "$T/check.out")"
as_mittari mittari plugins >"$T/plugins.out" 2>&1 || fail "mittari plugins as mittari"
grep -q "^input plugins ($PLUGDIR):" "$T/plugins.out" || fail "plugins: $(head -1 "$T/plugins.out")"
for p in cardreader feedback modbus serial sim file http mqtt postgresql; do
  grep -q "^  $p " "$T/plugins.out" || fail "mittari plugins does not list $p"
done
# the installed output modules load (check reads their option tables)
mkdir -m 755 "$W/net"
cp /etc/mittari/conf.d/10-agent.yaml "$W/net/"
cat >"$W/net/30-outputs.yaml" <<YAML
outputs:
  wh: {type: http, url: "https://warehouse.invalid/ingest"}
  broker: {type: mqtt, host: broker.invalid}
  db: {type: postgresql, conninfo: "host=db.invalid dbname=mittari"}
YAML
chmod -R a+rX "$W/net"
as_mittari mittari check -c "$W/net" >"$T/net.out" 2>&1 || { cat "$T/net.out"; fail "check of http, mqtt and postgresql outputs with the installed modules"; }
as_mittari /usr/libexec/mittari/configured 2>"$T/cond.out" && fail "unconfigured counts as configured"
grep -q "not configured yet" "$T/cond.out" || fail "ExecCondition gives no reason"
# the examples in 20-inputs.yaml are valid (the plugins check them)
mkdir -m 755 "$W/examples"
cp -r /etc/mittari/conf.d/profiles /etc/mittari/conf.d/10-agent.yaml "$W/examples/"
sed -n '/^# inputs:/,/^inputs:/p' /etc/mittari/conf.d/20-inputs.yaml | grep '^#' | sed 's/^# \{0,1\}//' >"$W/examples/20-inputs.yaml"
chmod -R a+rX "$W/examples"
as_mittari mittari check -c "$W/examples" >"$T/ex.out" 2>&1 || { cat "$T/ex.out"; fail "the input examples of 20-inputs.yaml are not valid"; }
grep -q "ok (site unconfigured, 3 inputs" "$T/ex.out" || fail "examples: $(cat "$T/ex.out")"
# man pages: present and clean
for m in man1/mittari.1 man5/mittari.conf.5 man7/mittari-plugins.7 man7/mittari-rules.7; do
  f=/usr/share/man/$m.gz
  [ -f "$f" ] || fail "no $f"
  zcat "$f" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>"$T/groff.out"
  [ -s "$T/groff.out" ] && fail "$m: $(head -3 "$T/groff.out")"
done
zcat /usr/share/man/man7/mittari-plugins.7.gz | grep -q '^\.SS "modbus"' || fail "mittari-plugins(7) lacks modbus"
# the example rules, where the example conf.d's 40-rules.yaml looks for them
for s in door-visitors occupancy families-monthly; do
  [ -f "/usr/share/doc/mittari/examples/scripts/$s.lua" ] || fail "no example rule $s.lua"
done

# ---- the SDK example, out of tree, against the installed package --------
cp -r /usr/share/doc/mittari/examples/plugin "$W/make"
make -C "$W/make" CFLAGS="-O2 -Wall -Wextra -Werror" >"$T/make.out" 2>&1 || { cat "$T/make.out"; fail "the example does not build with its Makefile"; }
grep -qF -- "$(pkg-config --cflags mittari)" "$T/make.out" || fail "the Makefile did not use pkg-config --cflags mittari"
cp -r /usr/share/doc/mittari/examples/plugin "$W/cmake"
(cmake -S "$W/cmake" -B "$W/cmake/build" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" && cmake --build "$W/cmake/build") >"$T/cmake.out" 2>&1 ||
  { cat "$T/cmake.out"; fail "the example does not build with find_package(mittari)"; }
[ -f "$W/cmake/build/heartbeat.so" ] || fail "CMake built no heartbeat.so"
mkdir -m 755 "$W/plugins"
make -C "$W/make" install PLUGINDIR="$W/plugins" >/dev/null || fail "make install"
chmod -R a+rX "$W/plugins"

# configure it: a local file, as the docs say
install -m 0640 -o root -g mittari /dev/stdin /etc/mittari/conf.d/50-local.yaml <<YAML
agent:
  site: it-deb
  plugin_path: $W/plugins
inputs:
  alive:
    plugin: heartbeat
    interval: 100ms
YAML
as_mittari /usr/libexec/mittari/configured || fail "configured configuration not accepted by the ExecCondition"
as_mittari mittari check >"$T/check2.out" 2>&1 || { cat "$T/check2.out"; fail "check as mittari with the example plugin"; }
as_mittari mittari plugins | grep -q "^  heartbeat .*$W/plugins/heartbeat.so" || fail "mittari plugins does not show the example"

# run it as the service does (user mittari, UMask 0027, the data dir)
( umask 0027 && exec runuser -u mittari -- mittari run -c /etc/mittari/conf.d ) >"$T/run.out" 2>"$T/agent.log" &
RUN_PID=$!
DB=/var/lib/mittari/mittari.db
# read as mittari: a root connection could leave root-owned -wal/-shm files
uptime_rows() {
  as_mittari sqlite3 "$DB" "select count(*) from readings r join series s on r.series = s.id where s.metric = 'uptime'" 2>/dev/null || echo 0
}
rows_at_least() { [ "$(uptime_rows)" -ge "$1" ]; }
wait_for 30 rows_at_least 10 || fail "the installed agent stored no readings of the example plugin"
wait_for 10 test -s /var/lib/mittari/readings.jsonl || fail "the archive output wrote nothing"
agent=$(pgrep -P "$RUN_PID" -x mittari || echo "$RUN_PID")
kill -TERM "$agent"
wait "$RUN_PID"; st=$?
RUN_PID=
[ "$st" = 0 ] || fail "the agent as mittari: exit $st"
grep -qi "denied\|cannot" "$T/agent.log" && fail "the agent logged: $(grep -im1 'denied\|cannot' "$T/agent.log")"
# the agent's files belong to its user (their modes: test_file_modes.sh);
# the data dir (0750) keeps others out either way
for f in mittari.db mittari.lock readings.jsonl pseudonym.key; do
  [ "$(stat -c %U:%G "/var/lib/mittari/$f")" = mittari:mittari ] || fail "$f: $(owner_mode "/var/lib/mittari/$f")"
done
expect_om /var/lib/mittari "mittari:mittari 750"
rows=$(uptime_rows)

# ---- upgrade: data, edited conffile, local file and owners kept ----------
sed -i 's/max_files: 5/max_files: 7/' /etc/mittari/conf.d/30-outputs.yaml
grep -q "max_files: 7" /etc/mittari/conf.d/30-outputs.yaml || fail "edit"
sum_local=$(md5sum </etc/mittari/conf.d/50-local.yaml)
key=$(md5sum </var/lib/mittari/pseudonym.key)
dpkg_ -i "$deb2" >"$T/upgrade.out" || fail "dpkg -i $deb2 (upgrade)"
[ "$(pkg_state)" = "installed 0.1.0-$REV2" ] || fail "after the upgrade: $(pkg_state)"
grep -q "not started" "$T/upgrade.out" && fail "the upgrade talks as if it were a first install"
grep -q "max_files: 7" /etc/mittari/conf.d/30-outputs.yaml || fail "the upgrade lost an edited conffile"
[ "$(md5sum </etc/mittari/conf.d/50-local.yaml)" = "$sum_local" ] || fail "the upgrade changed 50-local.yaml"
[ "$(md5sum </var/lib/mittari/pseudonym.key)" = "$key" ] || fail "the upgrade changed the pseudonym key"
[ "$(uptime_rows)" = "$rows" ] || fail "the upgrade changed the log ($rows -> $(uptime_rows) readings)"
[ "$(id -u mittari)" = "$uid" ] || fail "the upgrade changed the user"
expect_om /etc/mittari/conf.d/30-outputs.yaml "root:mittari 640"
expect_om /etc/mittari/conf.d/10-agent.yaml "root:mittari 640"
expect_om /etc/mittari "root:mittari 750"
expect_om /var/lib/mittari "mittari:mittari 750"
as_mittari mittari check >/dev/null 2>&1 || fail "check after the upgrade"

# ---- remove: configuration and data stay; purge: everything goes ---------
dpkg_ --remove mittari >"$T/remove.out" || fail "dpkg --remove"
[ -e /usr/bin/mittari ] && fail "remove left the binary"
[ -f /etc/mittari/conf.d/50-local.yaml ] && [ -f "$DB" ] || fail "remove deleted configuration or data"
id mittari >/dev/null 2>&1 || fail "remove deleted the user"
dpkg_ --purge mittari >"$T/purge.out" || fail "dpkg --purge"
[ "$(pkg_state | cut -d' ' -f1)" = not-installed ] || [ -z "$(pkg_state)" ] || fail "after purge: $(pkg_state)"
for d in /etc/mittari /var/lib/mittari; do [ -e "$d" ] && fail "purge left $d"; done
id mittari >/dev/null 2>&1 && fail "purge left the user mittari"
getent group mittari >/dev/null && fail "purge left the group mittari"
dpkg-statoverride --list | grep -q "mittari" && fail "purge left overrides: $(dpkg-statoverride --list | grep mittari)"
[ -e /etc/systemd/system/multi-user.target.wants/mittari.service ] && fail "purge left the unit enabled"
ok "deb: $(basename "$deb1") installs ($n config files root:mittari 0640), runs as mittari with the SDK example, upgrades keeping data and config, purges clean"
