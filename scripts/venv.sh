#!/usr/bin/env bash
# Source this file: it creates (once) and activates the project's virtual environment.
#
# The venv is keyed by a hash of pyproject.toml and lives outside the checkout
# ($CFFBENCH_VENV_ROOT, default ~/.cache/cffbench/venvs), so fresh clones (CI) reuse it instead
# of leaving a 6 GB venv behind per run; venvs built for older pyproject.toml hashes are deleted
# once a new one is complete. The caller's shell options are left as they were.
_cffbench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cffbench_root="${CFFBENCH_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cffbench/venvs}"
export CFFBENCH_VENV="$_cffbench_root/$(sha256sum "$_cffbench_repo/pyproject.toml" | cut -c1-12)"

_cffbench_build_venv() (
    set -euo pipefail
    mkdir -p "$_cffbench_root"
    if [ ! -f "$CFFBENCH_VENV/.complete" ]; then
        echo "[cffbench] building venv $CFFBENCH_VENV (installing torch takes a few minutes)" >&2
        rm -rf "$CFFBENCH_VENV"
        python3 -m venv "$CFFBENCH_VENV"
        "$CFFBENCH_VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel 2>&1 \
            | grep -v -e "^WARNING: Location 'file:" >&2 || true
        "$CFFBENCH_VENV/bin/python" -m pip install -q -e "$_cffbench_repo[dev]" 2>&1 \
            | grep -v -e "^WARNING: Location 'file:" >&2 || true
        "$CFFBENCH_VENV/bin/python" -c "import cffbench, torch, weasyprint"
        touch "$CFFBENCH_VENV/.complete"
        for old in "$_cffbench_root"/*; do
            [ "$old" = "$CFFBENCH_VENV" ] || rm -rf "$old"
        done
    else
        # Point the shared venv's editable install at this checkout (no dependency changes).
        log="$(mktemp)"
        "$CFFBENCH_VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$_cffbench_repo" >"$log" 2>&1 \
            || { cat "$log" >&2; rm -f "$log"; exit 1; }
        rm -f "$log"
    fi
)
_cffbench_build_venv || { echo "cffbench: error: could not build the venv $CFFBENCH_VENV" >&2; return 1 2>/dev/null || exit 1; }
# shellcheck disable=SC1091
source "$CFFBENCH_VENV/bin/activate"
