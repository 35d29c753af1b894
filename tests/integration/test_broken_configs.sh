#!/bin/bash
# Every file in tests/configs/broken/ must be refused by `mittari check`:
# exit status 3, a "FILE:LINE:COL: error: " line, and the text named by the
# file's first line "# expect: TEXT". Each also runs under valgrind when it
# is installed (and the binary is not built with ASan).
#
# Env (set by ctest): MITTARI, BUILD_DIR, SOURCE_DIR.
set -u

: "${MITTARI:?set MITTARI to the mittari binary}"
: "${BUILD_DIR:?set BUILD_DIR to the build directory}"
: "${SOURCE_DIR:?set SOURCE_DIR to the source directory}"

CORPUS="$SOURCE_DIR/tests/configs/broken"
PLUGINS="$BUILD_DIR/plugins"
MIN_FILES=25
EXIT_CONFIG=3

# env-unset.yaml relies on this one being unset
unset MITTARI_TEST_SURELY_UNSET_VARIABLE

TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT

use_valgrind=0
if command -v valgrind >/dev/null 2>&1; then
    if ldd "$MITTARI" 2>/dev/null | grep -q 'libasan'; then
        echo "note: $MITTARI is built with ASan; not running valgrind"
    else
        use_valgrind=1
    fi
else
    echo "note: valgrind not installed; skipping the valgrind runs"
fi

checked=0
failed=0

# Sets rc, and leaves stderr in $ERR (default $TMP/err). Arguments: the
# file, then a prefix command (may be empty).
run_check() {
    local file=$1
    shift
    "$@" "$MITTARI" check -c "$file" --plugin-dir "$PLUGINS" >/dev/null 2>"${ERR:-$TMP/err}"
    rc=$?
}

# 0 when some stderr line is "FILE:LINE:COL: error: ..."
has_position_line() {
    local file=$1 line rest
    while IFS= read -r line; do
        [[ $line == "$file:"* ]] || continue
        rest=${line#"$file:"}
        [[ $rest =~ ^[0-9]+:[0-9]+:\ error:\  ]] && return 0
    done <"${ERR:-$TMP/err}"
    return 1
}

# A control: a valid configuration passes, so the corpus fails for its own
# reasons and not because the plugin directory or the binary is broken.
cat >"$TMP/valid.yaml" <<'EOF'
agent:
  site: kuusamo-library
inputs:
  lobby:
    plugin: sim
outputs:
  archive:
    type: file
    path: /tmp/mittari-broken.jsonl
EOF
run_check "$TMP/valid.yaml"
if [[ $rc -ne 0 ]]; then
    echo "FAIL control: a valid configuration was refused (status $rc):"
    cat "$TMP/err"
    exit 1
fi

# check_one FILE: its verdict ("ok   NAME", or "FAIL NAME: why" and its
# stderr) on stdout. The files are checked in parallel (valgrind is slow).
check_one() {
    local file=$1 name=${1##*/} first expect why=()
    local ERR=$TMP/err-$name
    first=$(head -n 1 "$file")
    if [[ $first != "# expect: "?* ]]; then
        why+=("first line is not '# expect: TEXT'")
        expect=""
    else
        expect=${first#"# expect: "}
    fi

    run_check "$file"
    if [[ $rc -ge 128 ]]; then
        why+=("killed by signal $((rc - 128))")
    elif [[ $rc -ne $EXIT_CONFIG ]]; then
        why+=("exit status $rc, expected $EXIT_CONFIG")
    fi
    if ! has_position_line "$file"; then
        why+=("no '$file:LINE:COL: error: ' line")
    fi
    if [[ -n $expect ]] && ! grep -qF -- "$expect" "$ERR"; then
        why+=("stderr lacks '$expect'")
    fi
    local plain_err=$ERR
    if [[ $use_valgrind -eq 1 ]]; then
        ERR=$TMP/vg-$name
        run_check "$file" valgrind --error-exitcode=99 -q --leak-check=full \
            --errors-for-leak-kinds=definite
        if [[ $rc -eq 99 ]]; then
            why+=("valgrind found errors")
            plain_err=$ERR
        elif [[ $rc -ne $EXIT_CONFIG ]]; then
            why+=("under valgrind: exit status $rc, expected $EXIT_CONFIG")
        fi
    fi

    if [[ ${#why[@]} -eq 0 ]]; then
        echo "ok   $name"
    else
        echo "FAIL $name: $(IFS=';'; echo "${why[*]}")"
        sed 's/^/       | /' "$plain_err"
    fi
}

shopt -s nullglob
jobs_max=$(nproc 2>/dev/null || echo 2)
n=0
for file in "$CORPUS"/*.yaml; do
    n=$((n + 1))
    check_one "$file" >"$TMP/res-$(printf %04d "$n")" &
    while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do
        wait -n
    done
done
wait
for res in "$TMP"/res-*; do
    cat "$res"
    checked=$((checked + 1))
    grep -q "^FAIL " "$res" && failed=$((failed + 1))
done

echo "$checked broken configurations checked, $failed failed" \
    "(valgrind: $([[ $use_valgrind -eq 1 ]] && echo yes || echo no))"
if [[ $checked -lt $MIN_FILES ]]; then
    echo "FAIL: only $checked files in $CORPUS, expected at least $MIN_FILES"
    exit 1
fi
[[ $failed -eq 0 ]] || exit 1
exit 0
