#!/usr/bin/env bash
# One virtual environment per supported MCP framework line, for tests/frameworks.
#
# Usage: scripts/framework-envs.sh [LINE...]        (no LINE: every line)
#
# The lines (name, framework release, extra pins) are in tests/frameworks/lines.toml. Each
# environment is ${MCP_OTEL_ENVS_DIR:-<repo>/.envs}/<line> and holds mcp-otel (editable, so
# source edits need no rebuild), its `test` extra and exactly that framework release. An
# environment whose recorded spec hash (checkout, interpreter, line, pyproject.toml, script)
# matches is left alone, so a second run costs about a second. Progress goes to stderr;
# stdout is left empty.
#
# Environment: MCP_OTEL_ENVS_DIR (where the envs go), MCP_OTEL_ENVS_PYTHON (the base
# interpreter, default: the python3 on PATH, i.e. the one running CI), UV (the uv binary).
set -euo pipefail

log() { echo "framework-envs: $*" >&2; }

# shellcheck source=scripts/_envs-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_envs-common.sh"

# "name<TAB>requirement requirement..." for each line, from the one table of lines.
specs="$(cd "$repo" && "$python" - <<'EOF'
from tests.frameworks._lines import all_lines
for line in all_lines().values():
    print(line.name + "\t" + " ".join((line.requirement, *line.constraints)))
EOF
)"

wanted=("$@")
known=$(cut -f1 <<<"$specs")
for name in "${wanted[@]}"; do
    if ! grep -qx -- "$name" <<<"$known"; then
        log "unknown line '$name'; known: $(tr '\n' ' ' <<<"$known")"
        exit 2
    fi
done

mkdir -p "$envs"
py_id="$("$python" -c 'import sys; print(sys.version, sys.executable)')"
common_hash="$(cat "$repo/pyproject.toml" "${BASH_SOURCE[0]}" "$repo/scripts/_envs-common.sh" \
    | sha256sum | cut -d' ' -f1)"
total_start=$(date +%s)
built=0

while IFS=$'\t' read -r name reqs; do
    if [ "${#wanted[@]}" -gt 0 ] && ! printf '%s\n' "${wanted[@]}" | grep -qx -- "$name"; then
        continue
    fi
    env="$envs/$name"
    # The repo path is in it: the editable install points at this checkout.
    hash="$(printf '%s\n%s\n%s\n%s\n%s\n' "$repo" "$py_id" "$name" "$reqs" "$common_hash" \
        | sha256sum | cut -d' ' -f1)"
    if [ -x "$env/bin/python" ] && [ "$(cat "$env/.mcp-otel-spec" 2>/dev/null)" = "$hash" ]; then
        log "$name: up to date ($reqs)"
        continue
    fi
    start=$(date +%s)
    log "$name: building ($reqs)"
    rm -rf "$env"
    "$uv" venv --quiet --python "$python" "$env"
    # shellcheck disable=SC2086  # $reqs is a list of requirement strings without spaces
    "$uv" pip install --quiet --python "$env/bin/python" -e "$repo[test]" $reqs
    # Recorded last: an interrupted build is rebuilt on the next run.
    echo "$hash" >"$env/.mcp-otel-spec"
    built=$((built + 1))
    log "$name: ready in $(( $(date +%s) - start ))s"
done <<<"$specs"

log "$built built, in $(( $(date +%s) - total_start ))s, under $envs"
