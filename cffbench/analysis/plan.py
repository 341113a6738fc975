"""The analysis plan with every default filled in, and its hash (printed in every output)."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources

from cffbench.errors import StudyError
from cffbench.study.spec import AnalysisSection

#: How many hex digits of the plan's sha256 are shown.
PLAN_HASH_LENGTH = 12


@dataclass(frozen=True)
class Plan:
    """A resolved ``[analysis]`` plan (see :class:`cffbench.study.spec.AnalysisSection`).

    ``sesoi`` and ``margin`` are fractions (0.012 = 1.2 pp); ``sesoi_source`` says where the
    SESOI came from (the study file, or the paper value it defaults to).
    """

    reference: str
    primary: tuple[str, ...]
    adjust: str
    test: str
    alpha: float
    power: float
    sesoi: float
    margin: float
    sesoi_source: str
    permutation_exact_max_n: int
    permutation_resamples: int
    permutation_seed: int

    def as_dict(self) -> dict:
        out = asdict(self)
        out["primary"] = list(self.primary)
        return out

    @property
    def hash(self) -> str:
        return plan_hash(self)


def plan_hash(plan: Plan) -> str:
    """sha256 of the plan's canonical JSON (sorted keys, floats as Python writes them)."""
    text = json.dumps(plan.as_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:PLAN_HASH_LENGTH]


def paper_claim_pp(variant: str = "a-cff", reference: str = "ff", dataset: str = "mnist") -> tuple[float, str]:
    """The paper's claimed gain ``variant − reference`` on ``dataset`` in pp, from
    ``report/paper_values.toml`` (93.8 − 92.6 = 1.2 pp for A-CFF on MNIST)."""
    raw = tomllib.loads(resources.files("cffbench.report").joinpath("paper_values.toml").read_text())
    values = {(v["dataset"], v["variant"]): v["test_acc_pct"] for v in raw.get("value", [])}
    try:
        gain = values[(dataset, variant)] - values[(dataset, reference)]
    except KeyError:
        raise StudyError(f"paper_values.toml has no {dataset} {variant} and {reference} values to "
                         "default sesoi_pp from; set [analysis] sesoi_pp") from None
    citation = raw.get("source", {}).get("citation", "the paper")
    return round(gain, 10), (f"the claim being tested: {variant.upper()} − {reference.upper()} on "
                             f"{dataset} in {citation} ({values[(dataset, variant)]} − "
                             f"{values[(dataset, reference)]} %)")


def resolve_plan(section: AnalysisSection | None = None) -> Plan:
    """Fill the documented defaults into a study's ``[analysis]`` section (None: all defaults)."""
    section = section if section is not None else AnalysisSection()
    if section.sesoi_pp is not None:
        sesoi_pp, source = section.sesoi_pp, "the study's [analysis] sesoi_pp"
    else:
        sesoi_pp, source = paper_claim_pp(reference=section.reference)
    margin_pp = section.margin_pp if section.margin_pp is not None else sesoi_pp
    return Plan(reference=section.reference, primary=tuple(section.primary), adjust=section.adjust,
                test=section.test, alpha=section.alpha, power=section.power,
                sesoi=round(sesoi_pp / 100.0, 12), margin=round(margin_pp / 100.0, 12),
                sesoi_source=source, permutation_exact_max_n=section.permutation_exact_max_n,
                permutation_resamples=section.permutation_resamples,
                permutation_seed=section.permutation_seed)
