"""Form the plan's contrasts from a store's runs, decide each with the plan's one test, save it.

A *contrast* is ``variant − reference`` on the seeds both have, per dataset and per level of every
other varying run parameter (the grid axes; a variant that ignores an axis, e.g. FF and θ
placement, has null there and is shared across its levels). Primary contrasts are the plan's
``primary`` variants minus its ``reference``; every other variant minus the reference (BP − FF)
and every pair of primary variants at one level (A-CFF − F-CFF) is secondary. Multiplicity is
adjusted within (dataset, role): the primary family of one dataset, and its secondary family.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cffbench.analysis.factors import fingerprint_axes  # grid-axis columns, from TrainConfig
from cffbench.analysis.descriptives import condition_descriptives
from cffbench.analysis.plan import Plan, resolve_plan
from cffbench.analysis.planned import conditions_fingerprint, level_text, varying_axes
from cffbench.analysis.ranking import rank_summary
from cffbench.analysis.verdicts import NOT_YET_RUN, smallest_decisive_n, verdict_text
from cffbench.analysis.registration import Registration
from cffbench.errors import StatsError
from cffbench.stats import paired as P
from cffbench.stats.power import seeds_needed

#: Seeds below this count make "seeds needed" an order-of-magnitude figure (a small pilot).
SMALL_PILOT = 10


@dataclass
class PlanResult:
    """The one analysis of a store.

    Attributes
    ----------
    plan : the resolved :class:`Plan`; ``plan.hash`` is printed in every output.
    contrasts : one row per contrast (primary first). Differences are fractions (x100 = pp).
        ``estimate, ci_low, ci_high``: the primary test's estimate and its own unadjusted
        1 − alpha interval (t CI / inverted permutation CI / Hodges–Lehmann);
        ``ci_adj_low, ci_adj_high``: the same at 1 − alpha/m (Bonferroni-simultaneous over the
        family's m contrasts); ``p`` two-sided, ``p_adj`` adjusted over the family;
        ``p_me(_adj)``: minimum-effect test H0: Delta >= SESOI; ``p_tost(_adj)``: TOST within
        ±margin; ``verdict`` and ``verdict_text`` (primary only); ``prob_improvement`` with its
        Wilson interval ``pi_low, pi_high``; ``dz_corrected`` (Hedges' J); ``sd_diff``;
        ``seeds_needed`` (paired t at alpha/m, power, SESOI) with ``seeds_low, seeds_high`` from
        the SD's 95 % chi-square interval; ``small_pilot``; ``sensitivity`` (tests that would
        change the decision); ``note`` (why a contrast is undefined).
    sensitivity : one row per (contrast, test) for every test: ``estimate, ci_low, ci_high,
        confidence, method, p, p_adj, decision, verdict`` (what that test's own two-sided,
        minimum-effect and TOST p values would conclude, for a primary contrast) and
        ``changes_decision`` (its decision or its verdict differs from the plan's test's).
    notes : things a reader must know (missing cells, too few seeds; a deviation from the
        pre-registered plan first).
    registration : whether the plan analysed is the one the store recorded before its runs
        (:mod:`cffbench.analysis.registration`); empty status for runs analysed without a store.
    descriptives : one row per condition (dataset, variant and every varying axis): ``n, mean,
        std, ci_low, ci_high, gamma_final_mean`` (:mod:`cffbench.analysis.descriptives`).
    pilot : the contrasts of the same analysis of the first ``plan.pilot_seeds`` seeds alone
        (same columns as ``contrasts``; empty without a pilot): what a pilot of that size says.
    ranks, rank_pairs, cliques : the exploratory critical-difference summary of every condition
        (:mod:`cffbench.stats.ranks`): ``condition, avg_rank, n_blocks`` over the complete
        dataset × seed blocks, every pair's Wilcoxon p with Holm, and the maximal groups with no
        significant pair; empty with fewer than 4 conditions or 2 blocks.
    """

    plan: Plan
    contrasts: pd.DataFrame
    sensitivity: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    runs_hash: str = ""
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    cliques: list[list[str]] = field(default_factory=list)
    registration: Registration = field(default_factory=lambda: Registration("", ""))
    descriptives: pd.DataFrame = field(default_factory=pd.DataFrame)
    pilot: pd.DataFrame = field(default_factory=pd.DataFrame)

    def register(self, registration: Registration) -> None:
        """Attach the store's :class:`Registration`; a deviation leads the notes."""
        self.registration = registration
        if registration.deviation:
            self.notes = [registration.text, *[n for n in self.notes if n != registration.text]]

    @property
    def primary(self) -> pd.DataFrame:
        return self.contrasts[self.contrasts["role"] == "primary"]


def _matches(rows: pd.DataFrame, key: dict) -> pd.Series:
    keep = pd.Series(True, index=rows.index)
    for axis, value in key.items():
        keep &= rows[axis].isna() | (rows[axis].map(level_text) == level_text(value))
    return keep


def _keys(rows: pd.DataFrame, axes: list[str]) -> list[dict]:
    """The level combinations of ``axes`` a set of runs covers (axes null for them left out)."""
    used = [a for a in axes if rows[a].notna().any()]
    if not used:
        return [{}]
    shown: dict[tuple, tuple] = {}     # one key per level by value (1000 and 1000.0 are one level)
    for combo in rows[used].itertuples(index=False):
        text = tuple("nan" if pd.isna(v) else str(v) for v in combo)
        shown.setdefault(tuple("nan" if pd.isna(v) else level_text(v) for v in combo), text)
    return [dict(zip(used, text)) for text in sorted(shown.values())]


def _scope(key: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in key.items())


def _per_seed(rows: pd.DataFrame, dv: str) -> tuple[pd.Series | None, str]:
    if rows.empty:
        return None, "no runs"
    if rows["seed"].duplicated().any():
        return None, "more than one run per seed at this level (an axis the plan does not separate)"
    return rows.set_index("seed")[dv].astype(float), ""


def _pairs(planned: pd.DataFrame, runs: pd.DataFrame, plan: Plan, axes: list[str]) -> list[dict]:
    """Every contrast of one dataset, (role, variant, minus, key) with the stored runs of both
    sides: the contrasts are those of the ``planned`` conditions (the study's expansion, or the
    runs themselves when there is no study), whether or not their runs are stored yet."""
    out = []
    variants = list(dict.fromkeys(planned["variant"].astype(str)))
    primary = [v for v in plan.primary]
    others = sorted(v for v in variants if v not in primary and v != plan.reference)
    primary_keys = _keys(planned[planned["variant"].isin(primary)], axes)

    def stored(variant: str, key: dict) -> pd.DataFrame:
        rows = runs[runs["variant"] == variant]
        return rows[_matches(rows, key)]

    for role, names in (("primary", primary), ("secondary", others)):
        for variant in names:
            keys = primary_keys if role == "primary" else _keys(planned[planned["variant"] == variant], axes)
            for key in keys:
                out.append({"role": role, "variant": variant, "minus": plan.reference, "key": key,
                            "rows": stored(variant, key), "minus_rows": stored(plan.reference, key)})
    for key in primary_keys:
        for first, second in itertools.combinations(primary, 2):
            out.append({"role": "secondary", "variant": second, "minus": first, "key": key,
                        "rows": stored(second, key), "minus_rows": stored(first, key)})
    return out


def _differences(pair: dict, dv: str) -> tuple[np.ndarray, str]:
    a, why_a = _per_seed(pair["rows"], dv)
    b, why_b = _per_seed(pair["minus_rows"], dv)
    if a is None:
        return np.array([]), (f"{NOT_YET_RUN}: no {pair['variant']} runs at this level" if why_a == "no runs"
                              else why_a)
    if b is None:
        return np.array([]), (f"{NOT_YET_RUN}: no {pair['minus']} runs at this level" if why_b == "no runs"
                              else why_b)
    both = a.index.intersection(b.index)
    d = (a.loc[both] - b.loc[both]).sort_index().to_numpy(dtype=float)
    if d.size == 0:
        return d, f"no seed has both {pair['variant']} and {pair['minus']}"
    if d.size == 1:
        return d, "one seed only: no test, interval or SD is defined"
    if P.is_constant(d):
        return d, "the differences do not vary across seeds (SD 0): the t-test is undefined"
    return d, ""


def _label(variant: str, minus: str) -> str:
    return f"{variant.upper()} − {minus.upper()}"


def _decision(p: float, alpha: float) -> str:
    if not np.isfinite(p):
        return "undefined"
    return "significant" if p < alpha else "not significant"


def _seeds(sd: float, n: int, plan: Plan, alpha: float) -> tuple[float, float, float]:
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return math.nan, math.nan, math.nan
    low_sd, high_sd = P.sd_interval(sd, n)
    return tuple(seeds_needed(s, plan.sesoi, alpha, plan.power) for s in (sd, low_sd, high_sd))


def _family(rows: list[dict], plan: Plan) -> None:
    """Adjust the family's p values (each question and each test separately) and decide."""
    m = len(rows)   # the declared family: an untestable contrast (missing cell) still counts
    for column in ("p", "p_me", "p_tost"):
        adjusted = P.adjust(np.array([r[column] for r in rows], dtype=float), plan.adjust, m)
        for r, value in zip(rows, adjusted):
            r[f"{column}_adj"] = float(value)
    for test in P.TESTS:
        for key in ("by_test", "by_test_me", "by_test_tost"):
            values = [r[key][test].p if key == "by_test" else r[key][test] for r in rows]
            adjusted = P.adjust(np.array(values, dtype=float), plan.adjust, m)
            for r, value in zip(rows, adjusted):
                r[f"{key}_adj"][test] = float(value)
    power_alpha = plan.alpha / max(m, 1) if plan.adjust != "none" else plan.alpha
    settings = P.PermutationSettings(plan.permutation_exact_max_n, plan.permutation_resamples,
                                     plan.permutation_seed)
    for r in rows:
        r["family_size"] = m
        r["decision"] = NOT_YET_RUN if r["not_yet_run"] else _decision(r["p_adj"], plan.alpha)
        r["power_alpha"] = power_alpha
        # paired-t power, but never fewer seeds than the plan's own test needs to reject at all
        floor_n = smallest_decisive_n(plan.test, m if plan.adjust != "none" else 1, plan.alpha)
        r["seeds_needed"], r["seeds_low"], r["seeds_high"] = (
            max(v, floor_n) if np.isfinite(v) else v
            for v in _seeds(r["sd_diff"], r["n"], plan, power_alpha))
        adj = P.run_test(r["d"], plan.test, plan.alpha / max(m, 1), settings) if r["n"] >= 2 and m > 1 \
            else None
        r["ci_adj_low"] = adj.low if adj is not None else r["ci_low"]
        r["ci_adj_high"] = adj.high if adj is not None else r["ci_high"]
        if adj is not None and adj.confidence < 1 - plan.alpha / m - 5e-4:
            # a discrete test (signed rank at small n) has no bounded interval at 1 - alpha/m;
            # its widest one is of lower confidence and would pass for the simultaneous one
            r["ci_adj_low"], r["ci_adj_high"] = -math.inf, math.inf
        if r["note"]:
            r["ci_adj_low"] = r["ci_adj_high"] = math.nan
        if r["role"] == "primary":
            r["verdict"] = (NOT_YET_RUN if r["not_yet_run"] else "undefined") if r["note"] else P.verdict(
                r["p_adj"], r["estimate"], r["p_tost_adj"], r["p_me_adj"], plan.alpha,
                reference=plan.reference.upper())
        # what each test would conclude: its two-sided decision and, for a primary contrast,
        # the verdict from its own minimum-effect and TOST p values (a sign-flip TOST at n = 5
        # can never support equivalence, so a t-test's "equivalent" must be flagged)
        r["by_test_verdict"] = {
            t: ("" if r["role"] != "primary" or r["note"] else P.verdict(
                r["by_test_adj"][t], r["by_test"][t].estimate, r["by_test_tost_adj"][t],
                r["by_test_me_adj"][t], plan.alpha, reference=plan.reference.upper()))
            for t in P.TESTS}
        changed = [t for t in P.TESTS if t != plan.test and not r["note"]
                   and (_decision(r["by_test_adj"][t], plan.alpha) != r["decision"]
                        or r["by_test_verdict"][t] != r["by_test_verdict"][plan.test])]
        r["sensitivity"] = "; ".join(
            f"{P.TEST_LABEL[t]}: {_decision(r['by_test_adj'][t], plan.alpha)}"
            + (f", {r['by_test_verdict'][t]}" if r["by_test_verdict"][t] else "") for t in changed)
        if r["role"] == "primary":
            r["verdict_text"] = verdict_text(
                r["verdict"], r["seeds_needed"], r["seeds_low"], r["seeds_high"], r["n"], r["note"],
                smaller_than_claimed=bool(np.isfinite(r["p_me_adj"]) and r["p_me_adj"] < plan.alpha),
                floor_n=floor_n, test_label=P.TEST_LABEL[plan.test])
        else:
            r["verdict"] = r["verdict_text"] = ""


def analyze_runs(runs: pd.DataFrame, plan: Plan | None = None, dv: str = "test_acc",
                 planned: pd.DataFrame | None = None) -> PlanResult:
    """The plan's contrasts of ``runs`` (one row per run: ``dataset, variant, seed, dv`` and the
    axis columns; only ``status == "ok"`` runs with a finite ``dv`` are used).

    ``planned``: the study's planned runs (:func:`cffbench.analysis.planned.planned_runs`), which
    fix the contrasts and so each family's size; a contrast whose runs are missing is reported
    as "not yet run", never dropped. Without it, or when ``runs`` holds a ``run_id`` the plan does
    not (runs that are not the study's, said in the notes), the stored runs stand for the plan.
    """
    plan = plan if plan is not None else resolve_plan()
    missing = [c for c in ("dataset", "variant", "seed", dv) if c not in runs.columns]
    if missing:
        raise StatsError(f"runs lack the column(s) {', '.join(missing)}")
    ok = usable_runs(runs, dv)
    settings = P.PermutationSettings(plan.permutation_exact_max_n, plan.permutation_resamples,
                                     plan.permutation_seed)
    rows, notes = [], []
    if planned is not None and "run_id" in ok.columns:
        unknown = set(ok["run_id"].astype(str)) - set(planned["run_id"].astype(str))
        if unknown:   # not this study's runs: its grid cannot say which contrasts they form
            notes.append(f"{len(unknown)} of the {len(ok)} stored runs are not runs of the study file "
                         "beside them, so the contrasts and family sizes come from the stored runs")
            planned = None
    names = ok["dataset"].astype(str) if planned is None else pd.concat(
        [planned["dataset"].astype(str), ok["dataset"].astype(str)])
    for dataset in dataset_order(names):
        part = ok[ok["dataset"].astype(str) == dataset]
        conditions = part if planned is None else planned[planned["dataset"].astype(str) == dataset]
        axes = varying_axes(conditions)
        if plan.reference not in set(part["variant"]):
            notes.append(f"{dataset}: no {plan.reference} runs yet, so no primary contrast is decided")
        for variant in plan.primary:
            if variant not in set(part["variant"]):
                notes.append(f"{dataset}: no {variant} runs yet, so its primary contrasts are not decided")
        families: dict[str, list[dict]] = {}
        for pair in _pairs(conditions, part, plan, axes):
            d, note = _differences(pair, dv)
            n = int(d.size)
            main = P.run_test(d, plan.test, plan.alpha, settings) if n >= 2 else None
            by_test = {t: (P.run_test(d, t, plan.alpha, settings) if n >= 2 else
                           P.TestResult(t, n, math.nan, math.nan, math.nan, math.nan, "", math.nan))
                       for t in P.TESTS}
            if note:
                notes.append(f"{dataset}: {_label(pair['variant'], pair['minus'])}"
                             f"{' at ' + _scope(pair['key']) if pair['key'] else ''}: {note}")
            sd = float(np.std(d, ddof=1)) if n >= 2 else math.nan
            successes = float(np.sum(d > 0) + 0.5 * np.sum(d == 0)) if n else math.nan
            pi_low, pi_high = P.wilson_interval(successes, n) if n else (math.nan, math.nan)
            row = {
                "dataset": dataset, "scope": _scope(pair["key"]), "variant": pair["variant"],
                "minus": pair["minus"], "label": _label(pair["variant"], pair["minus"]),
                "role": pair["role"], "test": plan.test, "test_method": main.method if main else "",
                "n": n, "seeds": ",".join(str(s) for s in sorted(
                    set(pair["rows"]["seed"]) & set(pair["minus_rows"]["seed"]))),
                "estimate": main.estimate if main else (float(d[0]) if n == 1 else math.nan),
                # constant differences: the test is undefined, and so is its interval (not a
                # zero-width one that claims certainty)
                "ci_low": main.low if main and not note else math.nan,
                "ci_high": main.high if main and not note else math.nan,
                "ci_confidence": main.confidence if main else math.nan,
                "p": main.p if main else math.nan,
                "p_me": P.minimum_effect_p(d, plan.sesoi, plan.test, settings) if n >= 2 else math.nan,
                "p_tost": P.tost_p(d, plan.margin, plan.test, settings) if n >= 2 else math.nan,
                "mean_diff": float(np.mean(d)) if n else math.nan, "sd_diff": sd,
                "dz_corrected": P.corrected_dz(d) if n >= 3 else math.nan,
                "prob_improvement": P.prob_improvement(d) if n else math.nan,
                "pi_low": pi_low, "pi_high": pi_high,
                "small_pilot": bool(n < SMALL_PILOT), "note": note,
                "d": d, "by_test": by_test, "by_test_adj": {},
                "by_test_me": {t: P.minimum_effect_p(d, plan.sesoi, t, settings) if n >= 2
                               else math.nan for t in P.TESTS},
                "by_test_tost": {t: P.tost_p(d, plan.margin, t, settings) if n >= 2 else math.nan
                                 for t in P.TESTS},
                "by_test_me_adj": {}, "by_test_tost_adj": {},
                "not_yet_run": note.startswith(NOT_YET_RUN),
            }
            if note and n >= 2:  # constant differences: no test decides anything
                row.update(p=math.nan, p_me=math.nan, p_tost=math.nan)
            families.setdefault(pair["role"], []).append(row)
        for family_rows in families.values():
            _family(family_rows, plan)
            rows += family_rows
    result = _frames(rows, plan, notes, runs_fingerprint(ok, dv, planned))
    result.ranks, result.rank_pairs, result.cliques = rank_summary(ok, plan, dv)
    result.descriptives = condition_descriptives(ok, varying_axes(ok), dv)
    if plan.pilot_seeds:   # the same analysis, one code path, of the first seeds alone
        first = sorted(ok["seed"].unique())[:plan.pilot_seeds]
        pilot_plan = None if planned is None else planned[planned["seed"].isin(first)]
        result.pilot = analyze_runs(ok[ok["seed"].isin(first)], replace(plan, pilot_seeds=0), dv,
                                    pilot_plan).contrasts
    return result


def dataset_order(names: pd.Series) -> list[str]:
    """Datasets in registry order (mnist first), unknown names after, alphabetically."""
    from cffbench.data.registry import DATASETS

    rank = {name: i for i, name in enumerate(DATASETS)}
    return sorted(dict.fromkeys(names), key=lambda n: (rank.get(n, len(rank)), n))


def usable_runs(runs: pd.DataFrame, dv: str) -> pd.DataFrame:
    """``status == "ok"`` runs with a finite ``dv``."""
    ok = runs
    if "status" in runs.columns:
        ok = ok[ok["status"].astype(str) == "ok"]
    return ok[np.isfinite(pd.to_numeric(ok[dv], errors="coerce").to_numpy(dtype=float))]


def runs_fingerprint(ok: pd.DataFrame, dv: str, planned: pd.DataFrame | None = None) -> str:
    """sha256 (12 hex digits) of the analysed runs: dataset, variant, seed, axes and ``dv``, sorted,
    and of the planned conditions when there is a plan; a saved analysis whose fingerprint differs
    from the store's was made on other runs (or another grid). A setting added later that every
    run holds at its default is left out (:func:`~cffbench.analysis.factors.fingerprint_axes`)."""
    columns = ["dataset", "variant", "seed", *fingerprint_axes(ok), dv]
    text = ok[columns].astype(str).sort_values(columns).to_csv(index=False)
    plan_text = conditions_fingerprint(planned)
    return hashlib.sha256((text + plan_text).encode("utf-8")).hexdigest()[:12]


def _frames(rows: list[dict], plan: Plan, notes: list[str], runs_hash: str) -> PlanResult:
    sensitivity = []
    for r in rows:
        r["contrast_id"] = f"{r['dataset']}|{r['scope']}|{r['label']}"
        for test, res in r["by_test"].items():
            p_adj = r["by_test_adj"][test]
            sensitivity.append({
                "contrast_id": r["contrast_id"], "dataset": r["dataset"], "scope": r["scope"],
                "label": r["label"], "role": r["role"], "test": test,
                "primary_test": test == plan.test, "estimate": res.estimate,
                "ci_low": res.low if not r["note"] else math.nan,
                "ci_high": res.high if not r["note"] else math.nan,
                "confidence": res.confidence, "method": res.method,
                "p": res.p if not r["note"] or test != "t" else math.nan,
                "p_adj": p_adj if not r["note"] or test != "t" else math.nan,
                "decision": (_decision(p_adj, plan.alpha) if not r["note"] else
                             NOT_YET_RUN if r["not_yet_run"] else "undefined"),
                "verdict": r["by_test_verdict"][test],
                "changes_decision": bool(test != plan.test and not r["note"] and (
                    _decision(p_adj, plan.alpha) != r["decision"]
                    or r["by_test_verdict"][test] != r["by_test_verdict"][plan.test])),
            })
    columns = ["contrast_id", "dataset", "scope", "label", "variant", "minus", "role", "test",
               "test_method", "n", "seeds", "estimate", "ci_low", "ci_high", "ci_confidence",
               "ci_adj_low", "ci_adj_high", "family_size", "p", "p_adj", "decision", "p_me",
               "p_me_adj", "p_tost", "p_tost_adj", "verdict", "verdict_text", "mean_diff",
               "sd_diff", "dz_corrected", "prob_improvement", "pi_low", "pi_high", "power_alpha",
               "seeds_needed", "seeds_low", "seeds_high", "small_pilot", "sensitivity", "note"]
    contrasts = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    contrasts.insert(0, "plan_hash", plan.hash)   # every output names the plan it was decided by
    sensitivity = pd.DataFrame(sensitivity)
    if not sensitivity.empty:
        sensitivity.insert(0, "plan_hash", plan.hash)
    if not contrasts.empty:
        order = contrasts["role"].map({"primary": 0, "secondary": 1})
        contrasts = contrasts.assign(_o=order).sort_values(["_o"], kind="stable").drop(columns="_o")
        contrasts = contrasts.reset_index(drop=True)
    return PlanResult(plan, contrasts, sensitivity, list(dict.fromkeys(notes)), runs_hash)
