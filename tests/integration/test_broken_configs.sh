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

# Sets rc, and leaves stderr in $TMP/err. Arguments: a prefix command (may be
# empty) and the file.
run_check() {
    local file=$1
    shift
    "$@" "$MITTARI" check -c "$file" --plugin-dir "$PLUGINS" >"$TMP/out" 2>"$TMP/err"
    rc=$?
}

# 0 when some stderr line is "FILE:LINE:COL: error: ..."
has_position_line() {
    local file=$1 line rest
    while IFS= read -r line; do
        [[ $line == "$file:"* ]] || continue
        rest=${line#"$file:"}
        [[ $rest =~ ^[0-9]+:[0-9]+:\ error:\  ]] && return 0
    done <"$TMP/err"
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

shopt -s nullglob
for file in "$CORPUS"/*.yaml; do
    name=${file##*/}
    why=()
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
    if [[ -n $expect ]] && ! grep -qF -- "$expect" "$TMP/err"; then
        why+=("stderr lacks '$expect'")
    fi

    if [[ $use_valgrind -eq 1 ]]; then
        run_check "$file" valgrind --error-exitcode=99 -q --leak-check=full \
            --errors-for-leak-kinds=definite
        if [[ $rc -eq 99 ]]; then
            why+=("valgrind found errors")
            cp "$TMP/err" "$TMP/valgrind-$name.err"
        elif [[ $rc -ne $EXIT_CONFIG ]]; then
            why+=("under valgrind: exit status $rc, expected $EXIT_CONFIG")
        fi
    fi

    checked=$((checked + 1))
    if [[ ${#why[@]} -eq 0 ]]; then
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: $(IFS=';'; echo "${why[*]}")"
        sed 's/^/       | /' "$TMP/err"
    fi
done

echo "$checked broken configurations checked, $failed failed" \
    "(valgrind: $([[ $use_valgrind -eq 1 ]] && echo yes || echo no))"
if [[ $checked -lt $MIN_FILES ]]; then
    echo "FAIL: only $checked files in $CORPUS, expected at least $MIN_FILES"
    exit 1
fi
[[ $failed -eq 0 ]] || exit 1
exit 0
