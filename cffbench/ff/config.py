"""The training configuration of one run, declared once, and the per-purpose random streams
derived from its seed.

:class:`TrainConfig` is the only declaration of the training settings: each field's type,
allowed values, range and description live here, and everything else derives from it. The study
file's ``[train]`` / ``[collab]`` sections and its ``[grid]`` axes (``cffbench.study.spec``), the
``cffbench train`` options and ``--set key=value`` (``cffbench.cli``), the store's parameter columns
(``cffbench.study.store.RUN_SCHEMA``) and the analysis factors
(``cffbench.analysis.factors.FACTOR_COLUMNS``) are computed from ``TrainConfig.model_fields`` and
each field's :class:`Setting`. So a value is accepted or rejected by the same validator, with the
same message, wherever it is written.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import numpy as np
import pydantic
import torch
from pydantic import AfterValidator, Field

from cffbench import extensions
from cffbench.errors import TrainConfigError
from cffbench.ff.alpha import ALPHA_STRUCTURES, normalised_structures_coincide

#: Analysis factor tiers (:attr:`Setting.factor`): factors sort by tier, then by declaration order.
#: Tier 5 is the data's scale, ``n_train``, a ``[data]`` setting the analysis adds itself.
FACTOR_TIER_DATA_SCALE = 5


@dataclass(frozen=True)
class Setting:
    """Where a :class:`TrainConfig` field appears besides ``TrainConfig`` (``Annotated`` metadata).

    Attributes
    ----------
    section : ``"train"`` or ``"collab"``, the study file's section for the key (any section key
        may instead be a ``[grid]`` axis); ``None`` for ``seed``, which a study sets through its
        top-level ``seeds`` list. ``collab`` fields only affect ``f-cff`` / ``a-cff``:
        :meth:`TrainConfig.effective` drops them for ``ff`` and ``bp``.
    bp_ignores : the backprop reference does not read the field (``effective`` drops it for ``bp``).
    store_lead : the store writes the column among the leading parameter columns (after
        ``dataset``, before ``n_train``), where a reader of a run row looks first.
    store_after : ``TrainConfig`` properties the store writes as columns right after this
        field's (``hidden`` is followed by ``n_layers``).
    factor : analysis factor tier (see :data:`FACTOR_TIER_DATA_SCALE`): 0 the treatment
        (``variant``), 1–3 the ablations in the order reports cross them, 4 the network's scale,
        6 every other setting; ``None``: not a factor (``seed`` is the pairing unit).
    cli_short : a shorter name ``cffbench train`` also accepts for the option (``--epochs``).
    identity_omits_default : a setting added after runs were stored: at its default it is left
        out of run ids and checkpoint identities (:func:`identity_fields`), so those runs keep
        their ids and resume from their checkpoints.
    """

    section: Optional[Literal["train", "collab"]] = "train"
    bp_ignores: bool = False
    store_lead: bool = False
    store_after: tuple[str, ...] = ()
    factor: Optional[int] = 6
    cli_short: Optional[str] = None
    identity_omits_default: bool = False


@dataclass(frozen=True)
class Named:
    """``Annotated`` metadata of a field whose value names an entry of ``registry`` (a
    :class:`cffbench.extensions.Registry`); the allowed values are the registry's names."""

    registry: Any


def _registry_name(registry) -> Any:
    """The type of a setting that names a registered object: validated against the registry when
    the value is checked (so a plugin's names are allowed once it is loaded), with the words of a
    ``Literal``'s error (``Input should be 'ff', 'f-cff', 'a-cff' or 'bp'``)."""
    return Annotated[str, AfterValidator(registry.check_name), Named(registry)]


def registry_of(name: str):
    """The :class:`cffbench.extensions.Registry` whose names field ``name`` takes, or ``None``."""
    found = [m for m in TrainConfig.model_fields[name].metadata if isinstance(m, Named)]
    return found[0].registry if found else None


#: Types shared with the study file's other sections (``[analysis]`` names variants too).
Variant = _registry_name(extensions.VARIANTS)
NegativesName = _registry_name(extensions.NEGATIVES)
GoodnessName = _registry_name(extensions.GOODNESS)
AlphaStructure = Literal[ALPHA_STRUCTURES]  # type: ignore[valid-type]

_FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _at_least_one(widths: tuple[int, ...]) -> tuple[int, ...]:
    # not Field(min_length=1): pydantic would add "0 items after validation" to a bad width's error
    if not widths:
        raise ValueError("must list at least one layer width, e.g. [500, 500]")
    return widths

_COLLAB = Setting(section="collab")


def describe_error(err: dict[str, Any]) -> tuple[list[str], str]:
    """``(location, clause)`` of one pydantic error; the clause is ``what is wrong (got value)``.

    The study file (``cffbench.study.spec``) and :class:`TrainConfig` both word an error with this,
    so one bad value reads the same in a study file, in ``cffbench train --set`` and in Python.
    """
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = err.get("input")
    shown = "" if isinstance(value, (dict, type(None))) else f" (got {value!r})"
    return [str(p) for p in err["loc"]], f"{msg}{shown}"


class TrainConfig(pydantic.BaseModel, frozen=True, extra="forbid"):
    """Everything that determines one training run (see docs/architecture.md).

    Each field's description says what it does; its ``Annotated`` constraints say what is
    allowed; its :class:`Setting` says where else it appears. Invalid values raise
    :class:`~cffbench.errors.TrainConfigError` from the constructor (one line naming the field).
    """

    variant: Annotated[Variant, Setting(store_lead=True, factor=0)] = Field(
        "ff", description="ff (Hinton 2022 reference protocol), f-cff (collaborative goodness with "
        "a fixed γ), a-cff (a learned γ_l per layer) or bp (the same MLP trained end-to-end by "
        "backprop with a linear head)")
    hidden: Annotated[tuple[Annotated[int, Field(ge=1)], ...], AfterValidator(_at_least_one),
                      Setting(store_after=("n_layers",), factor=4)] = Field(
        (500, 500), description="hidden layer widths, first to last (at least one layer, each "
        ">= 1); stored as text, e.g. \"500-500\"")
    epochs_per_layer: Annotated[int, Field(ge=1), Setting(factor=4, cli_short="--epochs")] = Field(
        1000, description="E (>= 1): the sequential schedule trains each layer E full-batch "
        "epochs, the alternating one E epochs of every layer; bp trains E x layers epochs")
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        0.03, description="learning rate (> 0) of every layer's Adam (and of bp's)")
    threshold: Annotated[_FiniteFloat, Setting(bp_ignores=True)] = Field(
        2.0, description="the goodness threshold θ")
    batch_size: Annotated[int, Field(ge=0)] = Field(
        0, description="minibatch size (>= 0); 0 = full batch")
    schedule: Annotated[Literal["sequential", "alternating"],
                        Setting(bp_ignores=True, factor=3)] = Field(
        "sequential", description="sequential (layer by layer) or alternating (every layer "
        "once per epoch)")
    negatives: Annotated[NegativesName, Setting(bp_ignores=True)] = Field(
        "fixed", description="negative labels: fixed (a uniformly drawn wrong label, drawn once), "
        "redraw (drawn anew every epoch) or permutation (the reference's y[randperm(N)], drawn "
        "once; may equal the true label)")
    goodness: Annotated[GoodnessName, Setting(bp_ignores=True, identity_omits_default=True)] = Field(
        "mean_squares", description="the goodness function G = g(h) of every layer: mean_squares "
        "(mean_j h_j², Hinton 2022) or a plugin's")
    gamma: Annotated[_FiniteFloat, _COLLAB] = Field(
        1.0, description="F-CFF's fixed γ, A-CFF's initial γ")
    gamma_lr: Annotated[float, Field(ge=0, allow_inf_nan=False), _COLLAB] = Field(
        0.01, description="learning rate (>= 0) of A-CFF's γ and of a learned α")
    gamma_optimizer: Annotated[Literal["sgd", "adam"], _COLLAB] = Field(
        "sgd", description="optimiser of A-CFF's γ and of a learned α: sgd or adam")
    alpha: Annotated[AlphaStructure, Setting(section="collab", store_lead=True, factor=1)] = Field(
        "uniform", description="the collaboration weights α: uniform (1 / (L - 1)), distance "
        "(∝ alpha_decay^(|l - k| - 1)), learned (a softmax per layer, starting uniform) or ones "
        "(the paper's literal sum)")
    alpha_decay: Annotated[float, Field(gt=0, allow_inf_nan=False), _COLLAB] = Field(
        0.5, description="decay (> 0) of the distance structure")
    theta_placement: Annotated[Literal["per_term", "single"],
                               Setting(section="collab", factor=2)] = Field(
        "per_term", description="per_term ((G^l - θ) + γ Σ α (G^k - θ)) or single "
        "(G^l + γ Σ α G^k - θ)")
    precision: Annotated[Literal["fp32", "bf16"], Setting(bp_ignores=True)] = Field(
        "fp32", description="fp32, or bf16 matrix products (accumulation, Adam and evaluation "
        "stay fp32; bp always trains in fp32)")
    train_eval_size: Annotated[int, Field(ge=1)] = Field(
        10000, description="training accuracy is measured on a fixed subset of this size (>= 1)")
    seed: Annotated[int, Field(strict=True, ge=0, lt=2**63),
                    Setting(section=None, store_lead=True, factor=None)] = Field(
        0, description="the run's seed (an integer, 0 <= seed < 2^63): weights, negatives, "
        "minibatch order, the train-accuracy subset and the n_train subset derive from it")

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise config_error(exc) from None

    @property
    def n_layers(self) -> int:
        return len(self.hidden)

    @property
    def is_collaborative(self) -> bool:
        return self.variant in ("f-cff", "a-cff")

    def effective(self) -> dict:
        """Only the fields that affect this variant's result (used to deduplicate study grids).

        ``ff`` drops every ``[collab]`` field (γ, α, θ placement); ``bp`` additionally drops the
        fields its :class:`Setting` marks ``bp_ignores`` (``threshold``, ``schedule``,
        ``negatives``, ``goodness``, ``precision``); with two hidden layers every α structure coincides, so
        CFF's ``alpha`` is reported as ``"uniform"``; ``f-cff`` drops ``gamma_lr`` /
        ``gamma_optimizer`` unless α is learned; both CFF variants drop ``alpha_decay`` unless α
        is ``distance``. A plugin's variant keeps every field: cffbench cannot know which it
        reads, so no two of its grid points are merged wrongly.
        """
        fields = self.model_dump()
        fields["hidden"] = list(self.hidden)
        if self.is_collaborative and normalised_structures_coincide(self.n_layers):
            # Two layers: every alpha structure is [[0, 1], [1, 0]] (a learned row is the softmax
            # of one logit), so the runs are identical; one canonical name makes them one run.
            fields["alpha"] = "uniform"
        drop: set[str] = set()
        if not extensions.VARIANTS.is_builtin(self.variant):
            return fields
        if not self.is_collaborative:
            drop.update(section_fields("collab"))
        if self.variant == "bp":   # the backprop reference has no threshold, overlay or bf16
            drop.update(name for name, s in settings().items() if s.bp_ignores)
        if self.variant == "f-cff" and fields.get("alpha") != "learned":
            drop.update(("gamma_lr", "gamma_optimizer"))
        if fields.get("alpha") != "distance":
            drop.add("alpha_decay")
        return {k: v for k, v in fields.items() if k not in drop}


def identity_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (of :meth:`TrainConfig.effective` or ``model_dump``) without the settings whose
    :class:`Setting` has ``identity_omits_default`` while they hold their default: what run ids
    and checkpoint identities hash, so that adding such a setting changes no earlier id."""
    return {k: v for k, v in fields.items()
            if not (k in _SETTINGS and _SETTINGS[k].identity_omits_default
                    and v == TrainConfig.model_fields[k].default)}


def config_error(exc: pydantic.ValidationError) -> TrainConfigError:
    """The one-line :class:`TrainConfigError` for a failed ``TrainConfig`` validation."""
    problems = []
    for err in exc.errors():
        loc, clause = describe_error(err)
        problems.append(f"{'.'.join(loc) or 'config'}: {clause}")
    return TrainConfigError(f"invalid training configuration: {'; '.join(problems)}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` (``cffbench train --set``) as ``(field, value)``, not yet validated.

    The value is read as a study file's value is (TOML: ``0.01``, ``[500, 500]``, ``"ff"``); text
    that is not a TOML value, such as a bare word (``alpha=distance``), is a string. So
    ``TrainConfig`` sees the same Python value as from ``key = value`` in a study file, and accepts
    or rejects it with the same message.

    Raises
    ------
    TrainConfigError
        ``text`` has no ``=``, or ``key`` is not a ``TrainConfig`` field.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TrainConfigError(f"--set {text!r}: expected key=value, e.g. --set lr=0.01")
    if key not in TrainConfig.model_fields:
        raise TrainConfigError(f"--set {text!r}: unknown training setting {key!r}; allowed: "
                               f"{', '.join(TrainConfig.model_fields)}")
    return key, toml_value(value)


def toml_value(text: str) -> Any:
    """``text`` read as one TOML value (``"2"`` -> 2, ``"[1, 2]"`` -> [1, 2]), else ``text`` itself."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["value"] if list(parsed) == ["value"] else text


def settings() -> dict[str, Setting]:
    """Every ``TrainConfig`` field's :class:`Setting`, in declaration order."""
    return dict(_SETTINGS)


def section_fields(section: str) -> list[str]:
    """The ``TrainConfig`` fields of study-file section ``section`` (``"train"`` / ``"collab"``)."""
    return [name for name, s in _SETTINGS.items() if s.section == section]


def _setting_of(info: pydantic.fields.FieldInfo) -> Setting:
    found = [m for m in info.metadata if isinstance(m, Setting)]
    return found[0] if found else Setting()


_SETTINGS: dict[str, Setting] = {name: _setting_of(info)
                                 for name, info in TrainConfig.model_fields.items()}


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent CPU generators per purpose, derived from one run seed.

    Purposes: ``init`` (layer weights), ``negatives`` (wrong labels), ``batches`` (minibatch
    order), ``train_eval`` (the fixed train-accuracy subset). Deriving them with
    :class:`numpy.random.SeedSequence` means that one purpose drawing more numbers (e.g. a variant
    that redraws negatives) never shifts another purpose's stream, so variants with one seed pair.
    """
    purposes = ("init", "negatives", "batches", "train_eval")
    children = np.random.SeedSequence(int(seed)).spawn(len(purposes))
    return {name: torch.Generator().manual_seed(int(child.generate_state(1, np.uint64)[0] >> 1))
            for name, child in zip(purposes, children)}
