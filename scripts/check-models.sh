#!/usr/bin/env bash
# check-models.sh -- exhaustively model-check the SPIN models in models/.
#
# Correct models must verify with "errors: 0" (assertions + invalid end
# states, complete search).  Each BROKEN_* variant must produce a violation
# of the expected kind.  Prints one PASS/FAIL line per run; exits 0 iff all
# lines are PASS, 1 otherwise, 3 if spin is not installed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if ! command -v spin >/dev/null 2>&1; then
    echo "spin not installed"
    exit 3
fi
CC="${CC:-gcc}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# model | define (empty = correct model) | expected: ok, or a pan message
runs=(
    "vma_lock||ok"
    "vma_lock|BROKEN_NO_RECHECK|assertion violated"
    "vma_lock|BROKEN_LOST_WAKEUP|invalid end state"
    "vma_lock|BROKEN_SEQ_WRAP|assertion violated"
    "spf||ok"
    "spf|BROKEN_NO_PTL_RECHECK|assertion violated"
    "spf|BROKEN_ALLOC_NO_RECHECK|assertion violated"
    "spf|BROKEN_FREE_PGTABLES_NO_RELOOK|assertion violated"
)

failures=0
for run in "${runs[@]}"; do
    IFS='|' read -r model define expect <<<"$run"
    label="$model"
    dflag=()
    if [[ -n "$define" ]]; then
        label="$model[$define]"
        dflag=("-D$define")
    fi
    dir="$work/$model${define:+-$define}"
    mkdir -p "$dir"
    cp "models/$model.pml" "$dir/"

    if ! (cd "$dir" && spin "${dflag[@]}" -a "$model.pml") >"$dir/spin.log" 2>&1; then
        echo "FAIL $label: spin -a failed: $(tail -n 3 "$dir/spin.log" | tr '\n' ' ')"
        failures=$((failures + 1)); continue
    fi
    if ! (cd "$dir" && "$CC" -O2 -DSAFETY -o pan pan.c) >"$dir/cc.log" 2>&1; then
        echo "FAIL $label: compiling pan.c failed: $(tail -n 3 "$dir/cc.log" | tr '\n' ' ')"
        failures=$((failures + 1)); continue
    fi
    # pan exits 0 even when it finds errors; the output is what counts.
    (cd "$dir" && ./pan -m100000) >"$dir/pan.log" 2>&1 || true
    out="$(cat "$dir/pan.log")"

    errors="$(grep -oE 'errors: [0-9]+' <<<"$out" | head -n1 | awk '{print $2}' || true)"
    states="$(grep -oE '[0-9]+ states, stored' <<<"$out" | head -n1 | awk '{print $1}' || true)"
    what="$(grep -oE 'pan:1: .*' <<<"$out" | head -n1 | sed 's/^pan:1: //' || true)"
    if [[ -z "$errors" ]]; then
        echo "FAIL $label: could not parse pan output: $(tail -n 3 "$dir/pan.log" | tr '\n' ' ')"
        failures=$((failures + 1)); continue
    fi

    if [[ "$expect" == "ok" ]]; then
        if [[ "$errors" != "0" ]]; then
            echo "FAIL $label: $errors error(s): $what"
            failures=$((failures + 1))
        elif grep -qE 'max search depth too small|search not completed|out of memory' <<<"$out"; then
            echo "FAIL $label: search incomplete (states=$states)"
            failures=$((failures + 1))
        else
            echo "PASS $label: no violation (states=$states)"
        fi
    else
        if [[ "$errors" == "0" ]]; then
            echo "FAIL $label: expected a violation ($expect), none found (states=$states)"
            failures=$((failures + 1))
        elif [[ "$what" != *"$expect"* ]]; then
            echo "FAIL $label: violation of the wrong kind: $what (expected $expect)"
            failures=$((failures + 1))
        else
            echo "PASS $label: violation found as expected ($what)"
        fi
    fi
done

if [[ $failures -ne 0 ]]; then
    exit 1
fi
exit 0
