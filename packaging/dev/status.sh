# Sourced by the setup scripts (deps.sh, demo.sh, tests/run.sh, .ci/run,
# tests/fresh-machine.sh): each ends with an explicit status line, and a
# failure names the step it happened in.
#   status_init NAME     once, at the top (sets the EXIT trap)
#   step TEXT            before each step
#   status_ok TEXT       what the success line says (default "ok")
# On exit: "NAME: TEXT" when the script exits 0, else
# "NAME: FAILED in step 'TEXT' (exit N)" on standard error.
# A script that needs its own cleanup on exit adds it with status_on_exit CMD.
STATUS_NAME=${STATUS_NAME:-$(basename "$0")}
STATUS_STEP="start"
STATUS_OK="ok"
STATUS_CLEANUP=()

status_init() {
  STATUS_NAME=$1
  trap status_exit EXIT
}
step() { STATUS_STEP=$*; }
status_ok() { STATUS_OK=$*; }
status_on_exit() { STATUS_CLEANUP+=("$*"); }

status_exit() {
  local rc=$? c
  set +e
  for c in "${STATUS_CLEANUP[@]}"; do eval "$c"; done
  if [ "$rc" = 0 ]; then
    echo "$STATUS_NAME: $STATUS_OK"
  else
    echo "$STATUS_NAME: FAILED in step '$STATUS_STEP' (exit $rc)" >&2
  fi
  exit "$rc"
}
