#!/usr/bin/env bash
# The steps of the ckptspec GitHub Action (action.yml runs this very script; tests run it too).
#
# Inputs (environment):
#   CKPTSPEC_PATHS    whitespace-separated checkpoint / run directories, manifest.json or run.json files
#   CKPTSPEC_DEEP     "true": also verify every listed file's SHA-256 (--deep)
#   CKPTSPEC_STRICT   "true": warnings are errors (--strict)
#   CKPTSPEC_REPORT   where to write the JSON findings (default: ckptspec-findings.json)
#   CKPTSPEC_INSTALL  what to `pip install` (a path, wheel or requirement); empty: use `ckptspec` on PATH
#   CKPTSPEC_VENV     the virtual environment it is installed into (default: $RUNNER_TEMP/ckptspec-venv)
#   GITHUB_OUTPUT     if set, receives the outputs `verdict`, `exit-code`, `report` and `findings`
# Exit status: that of `ckptspec validate` (0 conformant, 1 not conformant, 2 could not check).
set -uo pipefail

report="${CKPTSPEC_REPORT:-ckptspec-findings.json}"
ckptspec=ckptspec
if [[ -n "${CKPTSPEC_INSTALL:-}" ]]; then
    venv="${CKPTSPEC_VENV:-${RUNNER_TEMP:-/tmp}/ckptspec-venv}"
    python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q "$CKPTSPEC_INSTALL" || {
        echo "ckptspec action: could not install $CKPTSPEC_INSTALL" >&2
        exit 2
    }
    ckptspec="$venv/bin/ckptspec"
fi

args=(validate --format json)
[[ "${CKPTSPEC_DEEP:-false}" == true ]] && args+=(--deep)
[[ "${CKPTSPEC_STRICT:-false}" == true ]] && args+=(--strict)
read -r -d '' -a paths <<< "${CKPTSPEC_PATHS:-}"
if (( ${#paths[@]} == 0 )); then
    echo "ckptspec action: input 'paths' is empty" >&2
    exit 2
fi

"$ckptspec" "${args[@]}" -- "${paths[@]}" > "$report"
status=$?
verdict=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["verdict"])' "$report" 2>/dev/null || echo not_checked)
echo "ckptspec validate: $verdict (exit $status); findings in $report" >&2
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    delimiter="ckptspec_$RANDOM$RANDOM"
    {
        echo "verdict=$verdict"
        echo "exit-code=$status"
        echo "report=$report"
        echo "findings<<$delimiter"
        cat "$report"
        echo "$delimiter"
    } >> "$GITHUB_OUTPUT"
fi
exit "$status"
