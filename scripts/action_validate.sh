#!/usr/bin/env bash
# The steps of the ckptspec GitHub Action (action.yml runs this very script; tests run it too).
#
# Inputs (environment):
#   CKPTSPEC_PATHS    whitespace-separated checkpoint / run directories, manifest.json or run.json
#                     files; glob patterns (`runs/*/step-*`, `**/manifest.json`) are expanded, and one
#                     that matches nothing is an error
#   CKPTSPEC_DEEP     "true": also verify every listed file's digest, in the algorithm its manifest
#                     names (xxh3-128 by default; BLAKE3, SHA-256, CRC-32C) (--deep)
#   CKPTSPEC_STRICT   "true": warnings are errors (--strict)
#   CKPTSPEC_REPORT   where to write the JSON findings (default: ckptspec-findings.json)
#   CKPTSPEC_SARIF    if set, where to write the findings as SARIF 2.1.0 (for code scanning)
#   CKPTSPEC_INSTALL  what to `pip install` (a path, wheel or requirement); empty: use `ckptspec` on PATH
#   CKPTSPEC_VENV     the virtual environment it is installed into (default: $RUNNER_TEMP/ckptspec-venv)
#   GITHUB_OUTPUT     if set, receives the outputs `verdict`, `exit-code`, `report` and `findings`
#   GITHUB_STEP_SUMMARY  if set, receives a Markdown table of the findings (the job summary)
# Standard output carries one GitHub annotation (`::error file=...,line=...::`) per finding.
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

args=(validate --format github --output "json:$report")
[[ -n "${CKPTSPEC_SARIF:-}" ]] && args+=(--output "sarif:$CKPTSPEC_SARIF")
[[ "${CKPTSPEC_DEEP:-false}" == true ]] && args+=(--deep)
[[ "${CKPTSPEC_STRICT:-false}" == true ]] && args+=(--strict)
read -r -d '' -a patterns <<< "${CKPTSPEC_PATHS:-}"
if (( ${#patterns[@]} == 0 )); then
    echo "ckptspec action: input 'paths' is empty" >&2
    exit 2
fi
shopt -s nullglob globstar
paths=()
for pattern in "${patterns[@]}"; do
    if [[ "$pattern" == *[*?[]* ]]; then
        matched=($pattern)
        if (( ${#matched[@]} == 0 )); then
            echo "::error title=ckptspec::paths pattern '$pattern' matches nothing"
            echo "ckptspec action: paths pattern '$pattern' matches nothing" >&2
            exit 2
        fi
        paths+=("${matched[@]}")
    else
        paths+=("$pattern")
    fi
done
shopt -u nullglob globstar

"$ckptspec" "${args[@]}" -- "${paths[@]}"
status=$?
verdict=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["verdict"])' "$report" 2>/dev/null || echo not_checked)
echo "ckptspec validate: $verdict (exit $status) on ${#paths[@]} path(s); findings in $report" >&2
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    python3 - "$report" "$verdict" >> "$GITHUB_STEP_SUMMARY" <<'PY' || echo "## ckptspec validate: $verdict" >> "$GITHUB_STEP_SUMMARY"
import json, sys
def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")
document = json.load(open(sys.argv[1]))
print(f"## ckptspec validate: {sys.argv[2].replace('_', ' ')}\n")
print(f"{len(document['targets'])} path(s), {document['counts']['error']} error(s), {document['counts']['warning']} warning(s)"
      + (" (--deep)" if document["deep"] else "") + "\n")
for target in document["targets"]:
    if not target["checked"] and not target.get("skipped"):
        print(f"- cannot check `{cell(target['error'])}`")
findings = document["findings"]
if findings:
    print("| Severity | Code | Requirement | Path | Message |\n|---|---|---|---|---|")
    for f in findings[:500]:
        where = f["path"] + (f"#{f['pointer']}" if f["pointer"] else "")
        print(f"| {f['severity']} | {f['code']} | {f['requirement']} | `{cell(where)}` | {cell(f['message'])} |")
    if len(findings) > 500:
        print(f"\n... and {len(findings) - 500} more in the findings report")
PY
fi
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
