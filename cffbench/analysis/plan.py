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


#: The fields of a :class:`Plan` that decide something: every number, test and verdict of the
#: analysis depends on these and nothing else, so they, and only they, make the plan's hash.
#: ``sesoi_source`` is prose (where the SESOI came from): rewording it is not a new plan; and
#: ``pilot_seeds`` only adds a report of the first seeds, deciding nothing.
DECISION_FIELDS = ("reference", "primary", "adjust", "test", "alpha", "power", "sesoi", "margin",
                   "permutation_exact_max_n", "permutation_resamples", "permutation_seed")


@dataclass(frozen=True)
class Plan:
    """A resolved ``[analysis]`` plan (see :class:`cffbench.study.spec.AnalysisSection`).

    ``sesoi`` and ``margin`` are fractions (0.012 = 1.2 pp); ``sesoi_source`` says where the
    SESOI came from (the study file, or the paper value it defaults to). ``hash`` covers the
    :data:`DECISION_FIELDS` only, as resolved: a study that states the default SESOI explicitly
    has the same plan as one that leaves it out.
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
    pilot_seeds: int = 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["primary"] = list(self.primary)
        return out

    @property
    def hash(self) -> str:
        return plan_hash(self)


def plan_hash(plan: Plan) -> str:
    """sha256 of the canonical JSON (sorted keys, floats as Python writes them) of the plan's
    :data:`DECISION_FIELDS`, first :data:`PLAN_HASH_LENGTH` hex digits."""
    decided = {k: v for k, v in plan.as_dict().items() if k in DECISION_FIELDS}
    text = json.dumps(decided, sort_keys=True, separators=(",", ":"))
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
    # the number's origin, not a claim about the contrasts it is applied to (any dataset, any
    # primary variant): those are named by every contrast's own label
    return round(gain, 10), (f"default, from {citation}: its {variant.upper()} − {reference.upper()} "
                             f"gain on {dataset.upper() if dataset == 'mnist' else dataset} "
                             f"({values[(dataset, variant)]} − {values[(dataset, reference)]} %), "
                             "applied to every primary contrast; [analysis] sesoi_pp sets another")


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
                permutation_seed=section.permutation_seed, pilot_seeds=section.pilot_seeds)
