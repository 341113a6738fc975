#!/usr/bin/env bash
# The main job, from a fresh machine: set up, run a study, analyse it, and render its report.
#   bash scripts/main.sh [STUDY]        (default: studies/quick.toml)
# Ends in reports/<study>/report.html and report.pdf (+ LaTeX tables and figures).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
study="${1:-studies/quick.toml}"
name="$(basename "$study" .toml)"
bash scripts/system-deps.sh
source scripts/venv.sh
export CFFBENCH_DATA="${CFFBENCH_DATA:-$PWD/data}"
cffbench data fetch
cffbench run "$study" --results "results/$name"
cffbench analyze "results/$name" --out "results/$name/analysis"
cffbench report "results/$name" --out "reports/$name"
echo "[cffbench] report: $PWD/reports/$name/report.html and report.pdf"
