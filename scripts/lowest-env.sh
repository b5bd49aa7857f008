#!/usr/bin/env bash
# A virtual environment with the lowest releases of mcp-otel's dependencies that
# pyproject.toml accepts.
#
# Usage: scripts/lowest-env.sh      (prints the environment's python on stdout)
#
# The main .venv gets the newest releases the bounds allow; this one pins every runtime
# dependency (`dependencies`: OpenTelemetry and orjson) and every opentelemetry-*
# requirement of the extras to its lower bound, so CI runs the tests at both ends of the
# declared ranges. (The demo extra's uvicorn and httpx floors are mcp 1.2.1's own and are
# tested in that framework line: tests/frameworks/lines.toml.) The environment is
# ${MCP_OTEL_ENVS_DIR:-<repo>/.envs}/lowest and holds mcp-otel (editable) with its
# `dev` extra. Like scripts/framework-envs.sh, it is rebuilt only when its spec (checkout,
# interpreter, pins, pyproject.toml, this script and _envs-common.sh) changes. Progress
# goes to stderr.
#
# Environment: MCP_OTEL_ENVS_DIR, MCP_OTEL_ENVS_PYTHON (base interpreter), UV (uv binary).
set -euo pipefail

log() { echo "lowest-env: $*" >&2; }

# shellcheck source=scripts/_envs-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_envs-common.sh"
env="$envs/lowest"

# "name==lower" for every runtime dependency and every opentelemetry-* requirement of an
# extra, from the one place the bounds are declared. A requirement without a lower bound
# is an error: the lowest release would then be a guess.
pins="$("$python" - "$repo/pyproject.toml" <<'EOF'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
reqs = [(req, True) for req in project["dependencies"]]
for extra in project.get("optional-dependencies", {}).values():
    reqs += [(req, False) for req in extra]
pins = {}
for req, runtime in reqs:
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", req.strip())
    if not m or not (runtime or m.group(1).startswith("opentelemetry-")):
        continue
    name, spec = m.groups()
    low = re.search(r">=\s*([^,\s]+)", spec)
    if not low:
        sys.exit(f"lowest-env: {name} has no lower bound in pyproject.toml")
    if pins.get(name, low.group(1)) != low.group(1):
        sys.exit(f"lowest-env: {name} has two lower bounds in pyproject.toml")
    pins[name] = low.group(1)
print(" ".join(f"{n}=={v}" for n, v in sorted(pins.items())))
EOF
)"

py_id="$("$python" -c 'import sys; print(sys.version, sys.executable)')"
hash="$(printf '%s\n%s\n%s\n' "$repo" "$py_id" "$pins" \
    | cat - "$repo/pyproject.toml" "${BASH_SOURCE[0]}" "$repo/scripts/_envs-common.sh" \
    | sha256sum | cut -d' ' -f1)"
if [ -x "$env/bin/python" ] && [ "$(cat "$env/.mcp-otel-spec" 2>/dev/null)" = "$hash" ]; then
    log "up to date ($pins)"
    echo "$env/bin/python"
    exit 0
fi
start=$(date +%s)
log "building ($pins)"
mkdir -p "$envs"
rm -rf "$env"
"$uv" venv --quiet --python "$python" "$env"
# shellcheck disable=SC2086  # $pins is a list of requirement strings without spaces
"$uv" pip install --quiet --python "$env/bin/python" -e "$repo[dev]" $pins
# Recorded last: an interrupted build is rebuilt on the next run.
echo "$hash" >"$env/.mcp-otel-spec"
log "ready in $(( $(date +%s) - start ))s"
echo "$env/bin/python"
