# Sourced by scripts/framework-envs.sh and scripts/lowest-env.sh (not run on its own):
# where the environments go, the base interpreter and the uv binary, the same way for both.
# The sourcing script sets `log` (its own prefix) first.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
envs="${MCP_OTEL_ENVS_DIR:-$repo/.envs}"
python="${MCP_OTEL_ENVS_PYTHON:-$(command -v python3)}"

uv="${UV:-}"
if [ -z "$uv" ]; then
    if command -v uv >/dev/null 2>&1; then
        uv="$(command -v uv)"
    elif [ -x "$repo/.venv/bin/uv" ]; then
        uv="$repo/.venv/bin/uv"
    else
        log "uv not found: pip install uv (it is in the dev extra) or set UV=/path/to/uv"
        exit 2
    fi
fi
