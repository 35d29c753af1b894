#!/bin/bash
# packaging/dev/deps.sh, the first step of both README commands, with stub
# dpkg-query, apt-get and id on PATH and its policy-rc.d in the test's dir
# (MITTARI_POLICY_RC_D): nothing is installed and /usr/sbin is not touched.
# Issue 9: with a policy-rc.d already there (Debian's container images ship
# one) the script exited 1 right after installing, with no message.
. "$(dirname "$0")/lib.sh"
DEPS="$SOURCE_DIR/packaging/dev/deps.sh"

mkdir -p "$T/bin"
# dpkg-query: every package installed except those listed in $T/missing
cat >"$T/bin/dpkg-query" <<'SH'
#!/bin/bash
pkg=${!#}
if grep -qxF "$pkg" "$STUB_DIR/missing" 2>/dev/null; then
  echo "dpkg-query: no packages found matching $pkg" >&2; exit 1
fi
printf 'install ok installed'
SH
# apt-get: logs its arguments and whether the policy file was in force
cat >"$T/bin/apt-get" <<'SH'
#!/bin/bash
echo "apt-get $*" >>"$STUB_DIR/apt.log"
for a in "$@"; do
  if [ "$a" = install ]; then
    if [ -x "$MITTARI_POLICY_RC_D" ] && "$MITTARI_POLICY_RC_D"; [ $? = 101 ]; then
      echo "policy in force" >>"$STUB_DIR/apt.log"
    fi
    exit "${STUB_INSTALL_RC:-0}"
  fi
done
exit 0
SH
cat >"$T/bin/id" <<'SH'
#!/bin/sh
[ "$1" = -u ] && { echo "${STUB_UID:-0}"; exit 0; }
exec /usr/bin/id "$@"
SH
chmod +x "$T/bin/"*
export STUB_DIR=$T MITTARI_POLICY_RC_D=$T/policy-rc.d

# run_deps: runs deps.sh with the stubs; sets st, leaves its output in
# $T/out and $T/err
run_deps() {
  rm -f "$T/apt.log"
  PATH="$T/bin:$PATH" bash "$DEPS" >"$T/out" 2>"$T/err"
  st=$?
}
show() { echo "--- stdout"; cat "$T/out"; echo "--- stderr"; cat "$T/err"; echo "--- apt"; cat "$T/apt.log" 2>/dev/null; }

# everything installed: no apt-get, an explicit ok
: >"$T/missing"
run_deps
[ $st = 0 ] || { show; fail "all installed: exit $st"; }
[ ! -e "$T/apt.log" ] || { show; fail "all installed: apt-get ran"; }
grep -q "^deps.sh: ok (all [0-9]* packages installed)" "$T/out" || { show; fail "all installed: no ok line"; }

# missing packages, no policy-rc.d: one is added for the install, removed after
printf 'faketime\nsocat\n' >"$T/missing"
run_deps
[ $st = 0 ] || { show; fail "no policy file: exit $st"; }
grep -q "^apt-get update" "$T/apt.log" || { show; fail "no apt-get update"; }
grep -q "^apt-get install .*socat faketime" "$T/apt.log" || { show; fail "missing packages not installed"; }
grep -q "policy in force" "$T/apt.log" || { show; fail "no policy-rc.d during the install"; }
[ ! -e "$T/policy-rc.d" ] || { show; fail "the added policy-rc.d was left behind"; }
grep -q "^deps.sh: ok (installed 2 packages: socat faketime)" "$T/out" || { show; fail "no ok line"; }

# missing packages, a policy-rc.d already there: kept as it was, exit 0
printf '#!/bin/sh\n# the image'"'"'s own\nexit 101\n' >"$T/policy-rc.d"
chmod 755 "$T/policy-rc.d"
cp "$T/policy-rc.d" "$T/policy.orig"
run_deps
[ $st = 0 ] || { show; fail "policy file present: exit $st (the first-run bug of issue 9)"; }
grep -q "policy in force" "$T/apt.log" || { show; fail "policy present: not in force"; }
cmp -s "$T/policy-rc.d" "$T/policy.orig" || { show; fail "the existing policy-rc.d was changed or removed"; }
grep -q "^deps.sh: ok (installed 2 packages" "$T/out" || { show; fail "policy present: no ok line"; }
rm -f "$T/policy-rc.d"

# a failing install: non-zero, the step named, the added policy removed
STUB_INSTALL_RC=100 run_deps
[ $st != 0 ] || { show; fail "failed install: exit 0"; }
grep -q "^deps.sh: FAILED in step 'apt-get install socat faketime' (exit 100)" "$T/err" || { show; fail "failed install: step not named"; }
[ ! -e "$T/policy-rc.d" ] || { show; fail "failed install: policy-rc.d left behind"; }

# not root: told what to install, nothing run
STUB_UID=1000 run_deps
[ $st = 1 ] || { show; fail "not root: exit $st"; }
grep -q "run as root (or install these packages): socat faketime" "$T/err" || { show; fail "not root: no advice"; }
grep -q "FAILED in step 'check for root'" "$T/err" || { show; fail "not root: step not named"; }
[ ! -e "$T/apt.log" ] || { show; fail "not root: apt-get ran"; }
ok "deps.sh: first run with and without a policy-rc.d, failures named"
