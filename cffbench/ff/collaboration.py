"""Logit rules: how a layer's logit is formed from the goodness, and what a variant learns for it.

A :class:`LogitRule` is the per-run state of a variant (:mod:`cffbench.ff.variants`): the engine
asks it for layer l's logit ``(..., M)`` from ``G^l`` and, if it :attr:`~LogitRule.reads_other_layers`,
every layer's goodness ``(..., L, M)``; it steps the rule's own parameters with layer l. Every
tensor may carry a leading seed axis (``seed_shape = (S,)`` for seed-stacked runs, ``()`` for
one run); the seeds never mix.

- :class:`PlainLogits` (``ff``): ``G^l − θ``, nothing learned.
- :class:`Collaboration` (``f-cff`` / ``a-cff``): the collaborative logit of
  :func:`~cffbench.ff.goodness.collaborative_logits` with γ (fixed or learned per layer) and α
  (a fixed structure or learned rows).
"""

from __future__ import annotations

import json

import torch

from cffbench.ff.alpha import alpha_matrix, learned_alpha_row
from cffbench.ff.checkpoint import copy_checked
from cffbench.ff.config import TrainConfig
from cffbench.ff.goodness import collaborative_logits
from cffbench.ff.result import optimizer_step

SeedShape = tuple[int, ...]


class LogitRule:
    """How layer l's logit is formed, and the parameters (with their optimisers) learned for it.

    Subclasses set :attr:`reads_other_layers` and implement :meth:`logits`; the rest defaults to
    "nothing learned". ``seed`` arguments pick one run of a seed stack (``None``: the only run).
    """

    #: Whether :meth:`logits` needs the other layers' goodness (the engine then runs the layers
    #: above l forward-only on l's output every step; they cost time, so rules that do not read
    #: them say so).
    reads_other_layers: bool = False

    def __init__(self, n_layers: int, seed_shape: SeedShape = ()) -> None:
        self.n_layers, self.seed_shape = n_layers, tuple(seed_shape)

    def logits(self, layer: int, own: torch.Tensor, others: torch.Tensor | None) -> torch.Tensor:
        """Layer ``layer``'s logits ``(..., M)`` (positive = "positive sample"); ``own`` is its
        goodness ``(..., M)`` (a leaf: gradients flow to it), ``others`` ``(..., L, M)`` every
        layer's goodness, detached (``None`` unless :attr:`reads_other_layers`)."""
        raise NotImplementedError

    def zero_grad(self, layer: int) -> None:
        """Clear the gradients of the parameters layer ``layer`` learns (before its step)."""

    def step(self, layer: int) -> None:
        """Step the parameters layer ``layer`` learns (after its weights' step)."""

    def finite(self) -> torch.Tensor:
        """Bool of shape ``seed_shape`` (on the CPU): every learned value of that run is finite."""
        return torch.ones(self.seed_shape, dtype=torch.bool)

    def curve_values(self, layer: int, seed: int | None = None) -> dict:
        """The ``gamma`` / ``alpha_row`` cells of layer ``layer``'s curve row (see RunResult)."""
        return {"gamma": float("nan"), "alpha_row": ""}

    def finals(self, seed: int | None = None) -> tuple[list[float], list[list[float]]]:
        """``(gamma_final, alpha_final)`` as :class:`~cffbench.ff.result.RunResult` reports them."""
        return [], []

    def state_dict(self) -> dict:
        """What a checkpoint keeps of this rule (one run only).

        By default the rule's whole attribute tree, under ``"rule_state"``: every tensor,
        ``torch.nn.Module`` (its state_dict), ``torch.optim.Optimizer`` (its state_dict and the
        values of its parameters), ``torch.Generator`` (its state) and number / bool / str
        value reached from the rule's attributes through lists, tuples, dicts and plain objects.
        Functions, classes, devices, dtypes and pydantic models (a config) are not state. A rule
        whose tree differs on resume (a tensor created lazily, after ``__init__``) gets a
        ValueError, so its checkpoint is ignored and the run starts over, never half-restored.
        (The three empty lists are :class:`Collaboration`'s keys: the checkpoint format of the
        built-ins.)"""
        return {"gammas": [], "alpha_logits": [], "collab_optimizers": [],
                "rule_state": {path: _save(kind, value)
                               for path, (kind, value, _) in _state_leaves(self).items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; raises ValueError on a state that does not fit."""
        if state["gammas"] or state["alpha_logits"] or any(state["collab_optimizers"]):
            raise ValueError("checkpoint has another collaboration state")
        leaves, saved = _state_leaves(self), state.get("rule_state", {})
        if set(leaves) != set(saved) or any(_kind(saved[p]) != leaves[p][0] for p in leaves):
            raise ValueError("checkpoint has another logit-rule state")
        for path, (kind, target, setter) in leaves.items():
            _restore(kind, target, setter, saved[path])


class _Nothing(LogitRule):
    """The state methods of a rule that learns nothing (the built-ins' checkpoint format)."""

    def state_dict(self) -> dict:
        return {"gammas": [], "alpha_logits": [], "collab_optimizers": []}

    def load_state_dict(self, state: dict) -> None:
        if state["gammas"] or state["alpha_logits"] or any(state["collab_optimizers"]) \
                or state.get("rule_state"):
            raise ValueError("checkpoint has another collaboration state")


# ------------------------------------------------------------- the default rule state
_VALUES = (bool, int, float, str, type(None))
_MAX_DEPTH = 8


def _state_leaves(rule: LogitRule) -> dict[str, tuple[str, object, object]]:
    """``path -> (kind, object, setter)`` of every piece of state in ``rule``'s attribute tree
    (see :meth:`LogitRule.state_dict`); ``setter`` puts a value back (None: immutable)."""
    leaves: dict[str, tuple[str, object, object]] = {}
    seen: set[int] = set()

    def walk(obj, path, setter, depth):
        if isinstance(obj, torch.Tensor):
            leaves[path] = ("tensor", obj, None)
        elif isinstance(obj, torch.Generator):
            leaves[path] = ("generator", obj, None)
        elif isinstance(obj, torch.nn.Module):
            leaves[path] = ("module", obj, None)
        elif isinstance(obj, torch.optim.Optimizer):
            leaves[path] = ("optimizer", obj, None)
        elif isinstance(obj, _VALUES):
            leaves[path] = ("value", obj, setter)
        elif id(obj) in seen or depth > _MAX_DEPTH or _not_state(obj):
            return
        elif isinstance(obj, (list, tuple, dict)):
            seen.add(id(obj))
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            for key, item in list(items):
                put = None if isinstance(obj, tuple) else (
                    lambda value, o=obj, k=key: o.__setitem__(k, value))
                walk(item, f"{path}[{key!r}]", put, depth + 1)
        elif hasattr(obj, "__dict__"):
            seen.add(id(obj))
            for name, item in list(vars(obj).items()):
                walk(item, f"{path}.{name}" if path else name,
                     lambda value, o=obj, n=name: setattr(o, n, value), depth + 1)

    seen.add(id(rule))
    for name, value in list(vars(rule).items()):
        walk(value, name, lambda v, n=name: setattr(rule, n, v), 1)
    return leaves


def _not_state(obj) -> bool:
    import inspect

    import pydantic

    return (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)
            or isinstance(obj, (torch.device, torch.dtype, pydantic.BaseModel)))


def _save(kind: str, obj) -> dict:
    if kind == "tensor":
        return {"tensor": obj.detach()}
    if kind == "generator":
        return {"generator": obj.get_state()}
    if kind == "module":
        return {"module": obj.state_dict()}
    if kind == "optimizer":
        return {"optimizer": obj.state_dict(),
                "params": [p.detach() for group in obj.param_groups for p in group["params"]]}
    return {"value": obj}


def _kind(saved: dict) -> str:
    return next(iter(saved))


def _restore(kind: str, target, setter, saved: dict) -> None:
    if kind == "tensor":
        with torch.no_grad():
            copy_checked(target, saved["tensor"])
    elif kind == "generator":
        target.set_state(saved["generator"])
    elif kind == "module":
        target.load_state_dict(saved["module"])
    elif kind == "optimizer":
        params = [p for group in target.param_groups for p in group["params"]]
        if len(params) != len(saved["params"]):
            raise ValueError("checkpoint has another logit-rule optimiser")
        with torch.no_grad():
            for param, value in zip(params, saved["params"]):
                copy_checked(param, value)
        target.load_state_dict(saved["optimizer"])
    elif saved["value"] != target and not (saved["value"] != saved["value"] and target != target):
        if setter is None:
            raise ValueError("checkpoint has another logit-rule state")
        setter(saved["value"])


class PlainLogits(_Nothing):
    """FF: ``logit = G^l − θ``; the other layers are not read, nothing is learned."""

    def __init__(self, config: TrainConfig, seed_shape: SeedShape = ()) -> None:
        super().__init__(config.n_layers, seed_shape)
        self.threshold = config.threshold

    def logits(self, layer: int, own: torch.Tensor, others: torch.Tensor | None) -> torch.Tensor:
        return collaborative_logits(own, None, 0.0, None, self.threshold)


def layer_optimizers(config: TrainConfig, gammas: list[torch.Tensor] | None,
                     alpha_logits: list[torch.Tensor | None] | None) -> list[torch.optim.Optimizer | None]:
    """One optimiser per layer (SGD or Adam, lr ``gamma_lr``) over that layer's learned γ and α
    logits, so a step for layer l moves only γ_l and α's row l; None where nothing is learned.
    SGD and Adam are elementwise, so one optimiser over a seed stack's ``(S,)`` γ takes exactly
    the steps of S separate ones."""
    opt_cls = torch.optim.Adam if config.gamma_optimizer == "adam" else torch.optim.SGD
    optimizers: list[torch.optim.Optimizer | None] = []
    for layer in range(config.n_layers):
        params = ([gammas[layer]] if gammas is not None else []) + (
            [alpha_logits[layer]] if alpha_logits is not None else [])
        optimizers.append(opt_cls(params, lr=config.gamma_lr) if params else None)
    return optimizers


class Collaboration(LogitRule):
    """The collaboration parameters of one run, or of S seed-stacked runs.

    ``gammas[l]`` has shape ``seed_shape``: a constant for ``f-cff`` (``learn_gamma=False``), a
    leaf trained by its own optimiser (SGD or Adam, lr ``gamma_lr``) for ``a-cff``.
    ``alpha_row(l)`` is row l of α, ``seed_shape + (L,)``; for ``alpha="learned"`` it is the
    softmax over k ≠ l of its own logits ``seed_shape + (L − 1,)`` (init 0, i.e. uniform),
    trained with lr ``gamma_lr`` by the ``gamma_optimizer`` kind (for f-cff too). Each layer owns
    separate γ / α optimisers, so :meth:`step` for layer l moves only γ_l and α's row l (Adam
    momentum of other rows cannot leak).
    """

    reads_other_layers = True

    def __init__(self, config: TrainConfig, device: torch.device, learn_gamma: bool,
                 seed_shape: SeedShape = ()) -> None:
        super().__init__(config.n_layers, seed_shape)
        n_layers, seed_shape = self.n_layers, self.seed_shape
        self.threshold, self.placement = config.threshold, config.theta_placement
        self.learn_gamma = learn_gamma
        self.learn_alpha = config.alpha == "learned" and n_layers > 1
        self.fixed_alpha = alpha_matrix(config.alpha, n_layers, config.alpha_decay).to(device)
        self.gammas = [torch.full(seed_shape, float(config.gamma), device=device,
                                  requires_grad=learn_gamma) for _ in range(n_layers)]
        self.alpha_logits = [torch.zeros(*seed_shape, n_layers - 1, device=device, requires_grad=True)
                             if self.learn_alpha else None for _ in range(n_layers)]
        self.optimizers = layer_optimizers(config, self.gammas if learn_gamma else None,
                                           self.alpha_logits if self.learn_alpha else None)

    def logits(self, layer: int, own: torch.Tensor, others: torch.Tensor | None) -> torch.Tensor:
        return collaborative_logits(own, others, self.gammas[layer], self.alpha_row(layer),
                                    self.threshold, self.placement)

    def gamma(self, layer: int) -> torch.Tensor:
        return self.gammas[layer]

    def alpha_row(self, layer: int) -> torch.Tensor:
        if self.learn_alpha:
            return learned_alpha_row(self.alpha_logits[layer], layer, self.n_layers)
        return self.fixed_alpha[layer].expand(*self.seed_shape, self.n_layers)

    def zero_grad(self, layer: int) -> None:
        if self.optimizers[layer] is not None:
            self.optimizers[layer].zero_grad(set_to_none=True)

    def step(self, layer: int) -> None:
        if self.optimizers[layer] is not None:
            optimizer_step(self.optimizers[layer])

    def finite(self) -> torch.Tensor:
        return torch.stack([torch.isfinite(g.detach()) for g in self.gammas]).all(dim=0).cpu()

    def gamma_value(self, layer: int, seed: int | None = None) -> float:
        gamma = self.gammas[layer].detach()
        return float(gamma if seed is None else gamma[seed])

    def _alpha_values(self, layer: int, seed: int | None) -> list[float]:
        with torch.no_grad():
            row = self.alpha_row(layer)
            return [float(v) for v in (row if seed is None else row[seed])]

    def alpha_row_json(self, layer: int, seed: int | None = None) -> str:
        """Row l of α as JSON text when α is learned, else ``""`` (the curves column)."""
        if not self.learn_alpha:
            return ""
        return json.dumps([round(v, 6) for v in self._alpha_values(layer, seed)])

    def alpha_final(self, seed: int | None = None) -> list[list[float]]:
        return [self._alpha_values(layer, seed) for layer in range(self.n_layers)]

    def curve_values(self, layer: int, seed: int | None = None) -> dict:
        return {"gamma": self.gamma_value(layer, seed), "alpha_row": self.alpha_row_json(layer, seed)}

    def finals(self, seed: int | None = None) -> tuple[list[float], list[list[float]]]:
        return ([self.gamma_value(layer, seed) for layer in range(self.n_layers)],
                self.alpha_final(seed))

    def state_dict(self) -> dict:
        return {"gammas": [g.detach() for g in self.gammas],
                "alpha_logits": [a.detach() for a in self.alpha_logits if a is not None],
                "collab_optimizers": [o.state_dict() if o is not None else None
                                      for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        learned = [a for a in self.alpha_logits if a is not None]
        if len(state["gammas"]) != len(self.gammas) or len(state["alpha_logits"]) != len(learned):
            raise ValueError("checkpoint has another collaboration state")
        with torch.no_grad():
            for target, value in zip([*self.gammas, *learned],
                                     [*state["gammas"], *state["alpha_logits"]]):
                copy_checked(target, value)
        for optimizer, saved in zip(self.optimizers, state["collab_optimizers"], strict=True):
            if (optimizer is None) != (saved is None):
                raise ValueError("checkpoint has other collaboration optimisers")
            if optimizer is not None:
                optimizer.load_state_dict(saved)

