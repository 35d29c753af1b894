#!/bin/bash
# The README's two commands, exactly as written, on a fresh Debian 12
# machine, first run: builds a minimal bookworm root with debootstrap (from
# the Debian mirror this machine's apt uses), copies a clean clone of HEAD
# into it and runs each command in its own copy of that root (chroot in a
# private mount and pid namespace), as root, with an empty environment.
# The root looks like Debian's container image: it has a policy-rc.d
# (--no-policy-rc-d leaves it out).
#
#   tests/fresh-machine.sh [--demo-only|--tests-only] [--no-policy-rc-d] [--keep]
#
# The demo runs until it prints readings, then gets SIGINT like Ctrl-C and
# must stop with status 0. Takes 20-40 minutes (packages, build, every
# test), so it is not part of .ci/run: run it before each change to
# packaging/dev/ or the README's commands. Needs root and the network to the
# Debian mirror only. MIRROR=URL overrides the mirror, FRESH_DIR=DIR the
# scratch dir (default /var/tmp/mittari-fresh.*, removed unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
. packaging/dev/status.sh
status_init fresh-machine.sh

run_demo=1 run_tests=1 policy=1 keep=0
for a in "$@"; do
  case $a in
  --demo-only) run_tests=0 ;;
  --tests-only) run_demo=0 ;;
  --no-policy-rc-d) policy=0 ;;
  --keep) keep=1 ;;
  *) step "read the arguments"; echo "unknown argument $a" >&2; exit 2 ;;
  esac
done

step "check for root"
[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh: run as root (debootstrap, chroot)" >&2; exit 1; }

step "install debootstrap"
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# the first http(s) URI of an active apt source that ends in /NAME
apt_uri() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE "https?://[^[:space:]]+/$1/?([[:space:]]|\$)" |
    head -1 | tr -d '[:space:]' | sed 's#/$##' || true
}
step "find the Debian mirror in /etc/apt/sources.list*"
mirror=${MIRROR:-$(apt_uri debian)}
security=$(apt_uri debian-security)
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list*; set MIRROR=URL" >&2; exit 1; }
echo "mirror: $mirror${security:+, security: $security}"

work=${FRESH_DIR:-$(mktemp -d /var/tmp/mittari-fresh.XXXXXX)}
mkdir -p "$work"
# the roots go on exit; the logs stay when something failed (or --keep)
cleanup_work() {
  local rc=$1
  if [ "$keep" = 1 ]; then echo "kept: $work" >&2; return; fi
  rm -rf --one-file-system "$work/base" "$work/demo" "$work/tests" "$work/clone"
  if [ "$rc" = 0 ]; then rm -rf "$work"; else echo "logs: $work" >&2; fi
}
status_on_exit 'cleanup_work $rc'
start=$SECONDS
elapsed() { local s=$((SECONDS - start)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

step "debootstrap bookworm (minbase) into $work/base"
debootstrap --variant=minbase bookworm "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; exit 1; }
# apt sources and a policy-rc.d as in Debian's container image; no build
# tools, no packages of the project's
{
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
  printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  [ -z "$security" ] || printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security"
} >"$work/base/etc/apt/sources.list.d/debian.sources"
rm -f "$work/base/etc/apt/sources.list"
if [ "$policy" = 1 ]; then
  printf '#!/bin/sh\n# as in Debian'"'"'s container image: no daemons started\nexit 101\n' \
    >"$work/base/usr/sbin/policy-rc.d"
  chmod 755 "$work/base/usr/sbin/policy-rc.d"
fi
cp /etc/resolv.conf "$work/base/etc/resolv.conf" 2>/dev/null || true
echo "root ready after $(elapsed)"

step "clone HEAD"
git clone -q --no-local --no-hardlinks "$src" "$work/clone"
echo "clean clone of $(git -C "$work/clone" log --oneline -1)"

# in_root ROOT CMD: CMD run by bash in ROOT/src/mittari, chrooted in its own
# mount and pid namespace (everything it starts dies with it; the
# namespace's init is the mounting shell, not CMD), with /dev,
# /dev/pts, /proc and /sys, and the environment of a fresh login
in_root() {
  local root=$1 cmd=$2
  unshare --mount --pid --fork --kill-child -- bash -c '
    set -e
    root=$1
    # the root a mount point of its own, so that unshare -m inside (the
    # pcsc test) can make / private
    mount --bind "$root" "$root"
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs tmpfs "$root/tmp"
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      /bin/bash -c "cd /src/mittari && $2"' in_root "$root" "$cmd"
}

# the README's commands: the lines of its first code block
mapfile -t cmds < <(awk '/^```/ {n++; next} n == 1' "$work/clone/README.md")
[ ${#cmds[@]} = 2 ] || { echo "README's first code block has ${#cmds[@]} lines, expected 2" >&2; exit 1; }

# fresh_copy NAME: a copy of the pristine root with the clone in /src/mittari
fresh_copy() {
  cp -a "$work/base" "$work/$1"
  mkdir -p "$work/$1/src"
  cp -a "$work/clone" "$work/$1/src/mittari"
}

if [ "$run_demo" = 1 ]; then
  cmd=${cmds[0]}
  step "README command 1 on a fresh root: $cmd"
  fresh_copy demo
  echo "running '$cmd' (first run) ..."
  t0=$SECONDS
  setsid bash -c "$(declare -f in_root); in_root \"\$1\" \"\$2\"" in_root "$work/demo" "$cmd" >"$work/demo.out" 2>"$work/demo.err" &
  pid=$!
  # Ctrl-C once readings arrive (its deps and build come first)
  for ((i = 0; i < 3600; i++)); do
    [ "$(grep -c ',demo-library,' "$work/demo.out" 2>/dev/null)" -ge 3 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -30 "$work/demo.err"; echo "the demo ended before it showed readings" >&2; exit 1
  fi
  kill -INT -- "-$pid"
  st=0
  wait "$pid" || st=$?
  tail -5 "$work/demo.err"
  [ "$st" = 0 ] || { tail -30 "$work/demo.err"; echo "demo: exit $st after Ctrl-C" >&2; exit 1; }
  grep -q '^seq,gen,ts,site,device,metric,value,unit,kind,subject,tags,revision,suppressed_below,origin$' "$work/demo.out" ||
    { echo "demo: no CSV header on standard output" >&2; exit 1; }
  grep -q '^demo.sh: stopped$' "$work/demo.out" || { echo "demo: no 'demo.sh: stopped'" >&2; exit 1; }
  echo "demo: $(grep -c ',demo-library,' "$work/demo.out") readings shown, stopped on Ctrl-C with status 0 ($(((SECONDS - t0) / 60)) min)"
fi

if [ "$run_tests" = 1 ]; then
  cmd=${cmds[1]}
  step "README command 2 on a fresh root: $cmd"
  fresh_copy tests
  echo "running '$cmd' (first run) ..."
  t0=$SECONDS
  st=0
  in_root "$work/tests" "$cmd" >"$work/tests.out" 2>&1 || st=$?
  tail -15 "$work/tests.out"
  [ "$st" = 0 ] || { echo "tests: exit $st (log: $work/tests.out)" >&2; exit 1; }
  grep -q '^run.sh: unit and integration tests passed$' "$work/tests.out" ||
    { echo "tests: no closing status line" >&2; exit 1; }
  # a fresh machine has everything a test needs: a skipped test is a failure
  if grep -q "The following tests did not run" "$work/tests.out"; then
    grep -A5 "The following tests did not run" "$work/tests.out" >&2
    echo "tests: some were skipped on the fresh root" >&2
    exit 1
  fi
  echo "tests: passed ($(((SECONDS - t0) / 60)) min)"
fi
status_ok "ok: the README's commands passed on a fresh Debian 12 root in $(elapsed)"
