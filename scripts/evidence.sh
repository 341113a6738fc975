#!/usr/bin/env bash
# Regenerate the committed release evidence from the committed Parquet run stores:
#   bash scripts/evidence.sh             analysis tables + reports/<study>/ (HTML, PDF, LaTeX, figures)
#   bash scripts/evidence.sh --run       first run (or resume) the studies themselves (times below);
#                                        finished runs are never redone
# Studies: paper_mnist (the paper's protocol, 35 runs: about 27 hours of a 2-core CPU, minutes on a
# GPU; interrupted runs resume from their checkpoints), replication_cpu (~70 min), alpha_ablation
# (~40 min), goodness_plugins and lorberbom (the plugin examples of docs/extending.md, ~10 min
# each). The reports carry the end time of the store's last run as their date
# (SOURCE_DATE_EPOCH), so tables, HTML, LaTeX, figures and (with the same fonts and WeasyPrint)
# the PDF regenerate byte for byte. Last, the generated blocks of
# docs/findings.md are recomputed from the same stores (the prose around them is not touched).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
studies=(paper_mnist replication_cpu alpha_ablation goodness_plugins lorberbom)
run=0
[[ "${1:-}" == "--run" ]] && run=1
source scripts/venv.sh
export CFFBENCH_DATA="${CFFBENCH_DATA:-$PWD/data}"
if (( run )); then
    bash scripts/system-deps.sh
    cffbench data fetch
fi
for name in "${studies[@]}"; do
    if (( run )); then
        cffbench run "studies/$name.toml" --results "results/$name"
    fi
    SOURCE_DATE_EPOCH="$(python -c 'import sys; from cffbench.report.store import load_inputs, runs_end_epoch
print(runs_end_epoch(load_inputs(sys.argv[1]).runs))' "results/$name")"
    export SOURCE_DATE_EPOCH
    # start clean: a table or figure that is no longer produced must not linger in the evidence
    rm -rf "results/$name/analysis" "reports/$name"
    cffbench analyze "results/$name" --out "results/$name/analysis"
    cffbench report "results/$name" --out "reports/$name"
done
python -m cffbench.report.findings --update docs/findings.md   # the numbers of docs/findings.md
echo "[cffbench] evidence: reports/{$(IFS=,; echo "${studies[*]}")}/report.{html,pdf} + tables/*.tex"
