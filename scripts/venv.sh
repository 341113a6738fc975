#!/usr/bin/env bash
# Source this file: it creates (once) and activates the project's virtual environment, and puts
# THIS checkout's code first on the Python path.
#
# The venv holds the dependencies only and is keyed by a hash of pyproject.toml; it lives outside
# the checkout ($CFFBENCH_VENV_ROOT, default ~/.cache/cffbench/venvs), so fresh clones (CI) reuse
# it instead of leaving a 6 GB venv behind per run. cffbench itself is never installed into it:
# each checkout's code comes from PYTHONPATH, set here and inherited by worker processes (local
# pool, Dask, SLURM jobs, which sbatch starts with the submitting environment). So two checkouts
# used at once (a study running from one clone while another is edited) never run each other's
# code. Venvs built for older pyproject.toml hashes are deleted once a new one is complete, unless
# a running process still uses them. The caller's shell options are left as they were.
_cffbench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cffbench_root="${CFFBENCH_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cffbench/venvs}"
export CFFBENCH_VENV="$_cffbench_root/$(sha256sum "$_cffbench_repo/pyproject.toml" | cut -c1-12)"

_cffbench_in_use() {   # is any running process started from venv $1, or using its libraries?
    # `python -m cffbench run` in an activated venv names no venv path on its command line; the
    # venv's shared libraries it has loaded (torch, numpy) are in its memory map
    grep -qsF -- "$1/" /proc/[0-9]*/cmdline /proc/[0-9]*/maps 2>/dev/null
}

_cffbench_deps_only() (
    # An editable install of some checkout (venvs built before this rule) would shadow nothing
    # (PYTHONPATH comes first) but confuses; remove it, and give the venv a `cffbench` command that
    # runs whichever checkout is on PYTHONPATH.
    set -euo pipefail
    if compgen -G "$CFFBENCH_VENV/lib/python*/site-packages/cffbench-*.dist-info" >/dev/null; then
        "$CFFBENCH_VENV/bin/python" -m pip uninstall -q -y cffbench >/dev/null 2>&1 || true
    fi
    printf '#!/bin/sh\nexec "%s/bin/python" -m cffbench "$@"\n' "$CFFBENCH_VENV" >"$CFFBENCH_VENV/bin/cffbench.tmp"
    chmod +x "$CFFBENCH_VENV/bin/cffbench.tmp"
    mv -f "$CFFBENCH_VENV/bin/cffbench.tmp" "$CFFBENCH_VENV/bin/cffbench"
)

_cffbench_quiet_pip() {   # pip, minus its "Location 'file:" warnings; pip's own exit status
    "$CFFBENCH_VENV/bin/python" -m pip "$@" 2> >(grep -v -e "^WARNING: Location 'file:" >&2)
}

_cffbench_build_venv() (
    # Every step ends the build on failure explicitly: this function is called as `f || ...`,
    # and bash ignores `set -e` inside such a call, so a failed pip install would otherwise go on
    # to mark a broken venv complete. One build at a time per venv (two shells sourcing this file
    # at once would each `rm -rf` the other's half-built venv): an flock where the system has one.
    set -uo pipefail
    mkdir -p "$_cffbench_root" || exit 1
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$CFFBENCH_VENV.lock" || exit 1
        flock 9 || exit 1
    fi
    if [ ! -f "$CFFBENCH_VENV/.complete" ]; then
        echo "[cffbench] building venv $CFFBENCH_VENV (installing torch takes a few minutes)" >&2
        rm -rf "$CFFBENCH_VENV"
        python3 -m venv "$CFFBENCH_VENV" || exit 1
        _cffbench_quiet_pip install -q --upgrade pip setuptools wheel || exit 1
        # the dependencies (with the dev extra) as pyproject.toml declares them; then the project
        # itself goes again (see above)
        _cffbench_quiet_pip install -q -e "$_cffbench_repo[dev]" || exit 1
        _cffbench_deps_only || exit 1
        PYTHONPATH="$_cffbench_repo" "$CFFBENCH_VENV/bin/python" -c "import cffbench, torch, weasyprint" \
            || exit 1
        touch "$CFFBENCH_VENV/.complete" || exit 1
        for old in "$_cffbench_root"/*; do
            [ -d "$old" ] || continue          # the .lock files
            [ "$old" = "$CFFBENCH_VENV" ] && continue
            if _cffbench_in_use "$old"; then
                echo "[cffbench] keeping old venv $old: a running process uses it" >&2
            else
                rm -rf "$old" "$old.lock"
            fi
        done
    else
        _cffbench_deps_only || exit 1
    fi
)
_cffbench_build_venv || { echo "cffbench: error: could not build the venv $CFFBENCH_VENV" >&2; return 1 2>/dev/null || exit 1; }
# shellcheck disable=SC1091
source "$CFFBENCH_VENV/bin/activate"
export PYTHONPATH="$_cffbench_repo${PYTHONPATH:+:$PYTHONPATH}"
