"""Is bf16 fit for evidence at the paper's scale? fp32 and bf16 runs of the same seeds, compared.

Pairs every finished run of the bf16 store (default ``results/paper_mnist_bf16``, the study
``studies/paper_mnist_bf16.toml``) with the finished fp32 run of the same condition (variant,
θ placement) and seed in the fp32 store (default ``results/paper_mnist``), and prints, as
Markdown:

- each pair's test accuracy and the difference bf16 − fp32;
- per condition: the number of paired seeds, the mean difference, its largest absolute value, the
  fp32 seed-to-seed SD of that condition (all its stored seeds) for scale, and whether the mean is
  within the rule's margin;
- the A-CFF − FF contrast per seed in each precision (what the study's verdicts are built from);
- layer health (:mod:`cffbench.report.layer_health`) of the paired runs in each precision: runs
  with a dead layer at some logged epoch and at the end, per condition and layer;
- the verdict of the rule fixed in the study file before any bf16 run: bf16 may be used for
  evidence at paper scale when every condition's mean paired difference is within ±0.3 pp and
  the layer-health counts agree.

Only whole seeds (every condition of the bf16 grid finished) are compared, as the study file
says. Usage::

    python benchmarks/bf16_paper_check.py [--fp32 results/paper_mnist] [--bf16 results/paper_mnist_bf16]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from cffbench.errors import CffbenchError
from cffbench.report.layer_health import layer_health, run_layer_health
from cffbench.report.store import load_inputs

MARGIN_PP = 0.3        # a quarter of the +1.2 pp claim under test (studies/paper_mnist_bf16.toml)
CONDITION = ["variant", "theta_placement"]


def condition_label(variant: str, theta) -> str:
    return variant if variant == "ff" or pd.isna(theta) else f"{variant} {theta}"


def finished(runs: pd.DataFrame, precision: str) -> pd.DataFrame:
    ok = runs[(runs["status"] == "ok") & (runs["precision"] == precision)].copy()
    ok["condition"] = [condition_label(v, t) for v, t in zip(ok["variant"], ok["theta_placement"])]
    return ok


def whole_seeds(bf16: pd.DataFrame) -> list[int]:
    """Seeds of the bf16 store with every condition finished (the store's complete blocks)."""
    conditions = set(bf16["condition"])
    by_seed = bf16.groupby("seed")["condition"].agg(set)
    return sorted(int(s) for s, have in by_seed.items() if have == conditions)


def paired(fp32: pd.DataFrame, bf16: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    keep = ["condition", "seed", "run_id", "test_acc", "duration_s"]
    pairs = bf16[bf16["seed"].isin(seeds)][keep].merge(
        fp32[keep], on=["condition", "seed"], suffixes=("_bf16", "_fp32"), how="left")
    missing = pairs[pairs["run_id_fp32"].isna()]
    if not missing.empty:
        rows = ", ".join(f"{c} seed {s}" for c, s in zip(missing["condition"], missing["seed"]))
        raise CffbenchError(f"no finished fp32 run to pair with: {rows}")
    pairs["diff_pp"] = 100 * (pairs["test_acc_bf16"] - pairs["test_acc_fp32"])
    return pairs.sort_values(["condition", "seed"]).reset_index(drop=True)


def health_counts(inputs, runs: pd.DataFrame) -> pd.DataFrame:
    """The report's layer-health counts of ``runs``, per condition and layer."""
    health = layer_health(run_layer_health(inputs.curves, runs, ["theta_placement"]),
                          ["theta_placement"])
    health["condition"] = [condition_label(v, t) for v, t in
                           zip(health["variant"], health["theta_placement"])]
    return health[["condition", "layer", "runs", "runs_dead", "dead_at_end"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", default="results/paper_mnist")
    parser.add_argument("--bf16", default="results/paper_mnist_bf16")
    args = parser.parse_args(argv)
    try:
        fp32_in, bf16_in = load_inputs(args.fp32), load_inputs(args.bf16)
        fp32, bf16 = finished(fp32_in.runs, "fp32"), finished(bf16_in.runs, "bf16")
        seeds = whole_seeds(bf16)
        if not seeds:
            raise CffbenchError(f"{args.bf16} holds no seed with every condition finished yet")
        pairs = paired(fp32, bf16, seeds)
    except CffbenchError as exc:
        print(f"bf16_paper_check: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1

    print(f"Paired seeds (whole blocks of the bf16 store): {', '.join(map(str, seeds))}\n")
    print("| condition | seed | fp32 test % | bf16 test % | bf16 − fp32 (pp) | fp32 min | bf16 min |")
    print("|---|---|---|---|---|---|---|")
    for row in pairs.itertuples():
        print(f"| {row.condition} | {row.seed} | {100 * row.test_acc_fp32:.2f} | "
              f"{100 * row.test_acc_bf16:.2f} | {row.diff_pp:+.2f} | "
              f"{row.duration_s_fp32 / 60:.0f} | {row.duration_s_bf16 / 60:.0f} |")

    print(f"\n| condition | paired seeds | mean bf16 − fp32 (pp) | largest |diff| (pp) | "
          f"fp32 seed SD (pp, seeds) | mean within ±{MARGIN_PP} pp |")
    print("|---|---|---|---|---|---|")
    within_all = True
    for condition, group in pairs.groupby("condition", sort=True):
        spread = fp32[fp32["condition"] == condition]["test_acc"]
        mean = group["diff_pp"].mean()
        within = abs(mean) <= MARGIN_PP
        within_all &= within
        print(f"| {condition} | {len(group)} | {mean:+.2f} | {group['diff_pp'].abs().max():.2f} | "
              f"{100 * spread.std(ddof=1):.2f} ({len(spread)}) | {'yes' if within else 'no'} |")

    contrast = pairs.pivot(index="seed", columns="condition",
                           values=["test_acc_fp32", "test_acc_bf16"])
    acff = sorted(c for c in set(pairs["condition"]) if c.startswith("a-cff"))
    if "ff" in set(pairs["condition"]) and acff:
        print("\n| seed | " + " | ".join(f"{c} − ff, fp32 | {c} − ff, bf16" for c in acff) + " |")
        print("|---|" + "---|---|" * len(acff))
        for seed in contrast.index:
            cells = []
            for c in acff:
                for precision in ("fp32", "bf16"):
                    col = f"test_acc_{precision}"
                    cells.append(f"{100 * (contrast.loc[seed, (col, c)] - contrast.loc[seed, (col, 'ff')]):+.2f}")
            print(f"| {seed} | " + " | ".join(cells) + " |")

    fp32_paired = fp32_in.runs[fp32_in.runs["run_id"].isin(pairs["run_id_fp32"])]
    bf16_paired = bf16_in.runs[bf16_in.runs["run_id"].isin(pairs["run_id_bf16"])]
    health = health_counts(fp32_in, fp32_paired).merge(
        health_counts(bf16_in, bf16_paired), on=["condition", "layer"], suffixes=("_fp32", "_bf16"),
        how="outer")
    print("\n| condition | layer | runs | dead at some epoch, fp32 / bf16 | dead at the end, fp32 / bf16 |")
    print("|---|---|---|---|---|")
    same_health = True
    for row in health.itertuples():
        same_health &= ((row.runs_dead_fp32, row.dead_at_end_fp32)
                        == (row.runs_dead_bf16, row.dead_at_end_bf16))
        print(f"| {row.condition} | {row.layer} | {row.runs_fp32:.0f} | {row.runs_dead_fp32:.0f} / "
              f"{row.runs_dead_bf16:.0f} | {row.dead_at_end_fp32:.0f} / {row.dead_at_end_bf16:.0f} |")

    fit = within_all and same_health
    print(f"\nRule (fixed before any bf16 run): every mean within ±{MARGIN_PP} pp: "
          f"{'yes' if within_all else 'no'}; layer health the same: {'yes' if same_health else 'no'}. "
          f"bf16 {'MAY' if fit else 'may NOT'} be used for evidence at paper scale "
          f"(on {len(seeds)} paired seed(s)).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
