"""Loading plugins: a user's Python file, or an installed package's entry points.

A plugin registers variants, goodness functions, negative-data rules or datasets through the
registries of :mod:`cffbench.extensions` (see there for what each must provide). It is loaded

- from a file named in a study (``plugins = ["my_ff.py"]``, relative to the study file) or given
  to ``cffbench train --plugin FILE`` (:func:`load_plugin_file`); its name is the file's stem, its
  version the module's ``__version__`` (``""`` if it has none);
- from an installed distribution's entry points in the groups of
  :data:`cffbench.extensions.REGISTRIES` (``cffbench.goodness = {sum_squares =
  "my_pkg.goodness:SumSquares"}``), once per process on the first registry look-up
  (:func:`load_entry_points`); its name and version are the distribution's.

Every object a plugin registers is checked when it is loaded (the right base class and method
signatures; a goodness function is probed on small activations for its output shape and finite
values, and its fast form and manual gradient, where given, against autograd; a variant's logit
rule is built and asked for logits). A broken plugin raises :class:`~cffbench.errors.ExtensionError` naming the file and the
problem, and nothing it registered stays registered. The :class:`Plugin` (name, version, sha256 of
the file) is stored with every run that uses one of its objects and enters that run's id
(:func:`plugins_of`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from cffbench import extensions
from cffbench.errors import ExtensionError


@dataclass(frozen=True)
class Plugin:
    """Where registered objects came from.

    Attributes
    ----------
    name : the file's stem, or the distribution's name for entry points.
    version : the module's ``__version__`` (file) or the distribution's version; ``""`` if none.
    sha256 : hex sha256 of the plugin file (of an entry point's module file).
    path : the file, resolved; ``None`` for entry points (workers load those themselves).
    """

    name: str
    version: str
    sha256: str
    path: Optional[str] = None

    def record(self) -> dict[str, str]:
        """What enters a run id: name, version and file hash."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


#: Plugin files loaded in this process, by resolved path.
_LOADED_FILES: dict[str, Plugin] = {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_plugin_file(path: Path | str, expected_sha256: Optional[str] = None) -> Plugin:
    """Import the plugin file ``path`` (once per process and content) and check what it registers.

    ``expected_sha256``: the hash the driver saw (a worker process refuses a file changed since).

    Raises
    ------
    ExtensionError
        ``<file>: <problem>``: the file is missing, does not compile, raises at import,
        registers a clashing name or an object of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ExtensionError(f"{path}: no such plugin file")
    try:
        sha = _sha256(path)
    except OSError as exc:
        raise ExtensionError(f"{path}: cannot read plugin file: {exc.strerror or exc}") from None
    if expected_sha256 is not None and sha != expected_sha256:
        raise ExtensionError(f"{path}: the plugin file changed since the study was planned")
    key = str(path.resolve())
    if key in _LOADED_FILES:
        if _LOADED_FILES[key].sha256 != sha:
            raise ExtensionError(f"{path}: the plugin file changed after it was loaded")
        return _LOADED_FILES[key]
    for loaded in _LOADED_FILES.values():   # a copy of a loaded file (a results folder's)
        if (loaded.name, loaded.sha256) == (path.stem, sha):
            return loaded
    module_name = f"cffbench_plugin_{path.stem}_{sha[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExtensionError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    plugin = Plugin(path.stem, "", sha, key)
    before = _builtin_entries()
    with extensions.registering_for(plugin) as added:
        sys.modules[module_name] = module    # classes defined in it must be importable (pickling)
        try:
            spec.loader.exec_module(module)
            _check_builtins_untouched(before)
            version = getattr(module, "__version__", "")
            if not isinstance(version, str):
                raise ExtensionError(f"__version__ must be a string (got {version!r})")
            plugin = Plugin(path.stem, version, sha, key)
            for registry, name in added:
                registry._origins[name] = plugin
                check_extension(registry, registry[name])
        except BaseException as exc:
            for registry, name in added:
                registry.unregister(name)
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ExtensionError(f"{path}: {_problem(exc)}") from None
    if not added:
        raise ExtensionError(f"{path}: registers nothing (use cffbench.extensions.VARIANTS"
                             f".register, GOODNESS.register, ...)")
    _LOADED_FILES[key] = plugin
    return plugin


def _builtin_entries() -> dict[tuple[str, str], Any]:
    """Every registry's built-in objects, by (kind, name)."""
    for registry in extensions.REGISTRIES.values():
        registry.names()   # the built-ins register lazily: load them before the snapshot
    return {(registry.kind, name): registry._entries.get(name)
            for registry in extensions.REGISTRIES.values()
            for name in sorted(registry._builtins) if registry.is_builtin(name)}


def _check_builtins_untouched(before: dict[tuple[str, str], Any]) -> None:
    """A plugin that swapped a built-in object (by reaching into a registry) would have its runs
    stored as the built-in's: put the built-ins back and refuse the plugin."""
    changed = [key for key, obj in _builtin_entries().items() if before.get(key) is not obj]
    by_kind = {registry.kind: registry for registry in extensions.REGISTRIES.values()}
    for kind, name in changed:
        by_kind[kind]._entries[name] = before[(kind, name)]
    if changed:
        kind, name = changed[0]
        raise ExtensionError(f"it replaces the built-in {kind} {name!r}; register a new name")


def _problem(exc: BaseException) -> str:
    """One line for what went wrong while importing or checking a plugin."""
    if isinstance(exc, SyntaxError):
        return f"syntax error at line {exc.lineno}: {exc.msg}"
    if isinstance(exc, ExtensionError):
        return " ".join(str(exc).split())
    if isinstance(exc, SystemExit):
        return f"called exit({exc.code}) at import"
    return " ".join(f"{type(exc).__name__} at import: {exc}".split())


def load_plugin_files(paths: list[str], relative_to: Path | None = None) -> list[Plugin]:
    """:func:`load_plugin_file` for each of ``paths`` (relative ones against ``relative_to``)."""
    base = relative_to or Path(".")
    return [load_plugin_file(p if Path(p).is_absolute() else base / p) for p in paths]


def load_entry_points() -> list[Plugin]:
    """Register the objects of every installed entry point in the groups of
    :data:`cffbench.extensions.REGISTRIES` (``ep.load()`` gives the object or class)."""
    plugins = []
    for group, registry in extensions.REGISTRIES.items():
        for entry in importlib.metadata.entry_points(group=group):
            dist = entry.dist
            try:
                spec = importlib.util.find_spec(entry.module)
            except Exception as exc:   # e.g. a parent package that is not installed
                raise ExtensionError(f"entry point {entry.name!r} of {group} "
                                     f"({dist.name if dist else entry.value}): {_problem(exc)}"
                                     ) from None
            origin = Path(spec.origin) if spec is not None and spec.origin else None
            where = str(origin) if origin is not None else entry.value
            plugin = Plugin(dist.name if dist else entry.module, dist.version if dist else "",
                            _sha256(origin) if origin is not None and origin.is_file() else "")
            with extensions.registering_for(plugin) as added:
                try:
                    registry.register(entry.load())
                    for reg, name in added:
                        check_extension(reg, reg[name])
                except Exception as exc:
                    for reg, name in added:
                        reg.unregister(name)
                    raise ExtensionError(f"{where}: entry point {entry.name!r} of {group}: "
                                         f"{_problem(exc)}") from None
            plugins.append(plugin)
    return plugins


# ----------------------------------------------------------------------------- checks
def _check_signature(owner: str, method: Any, *args: Any) -> None:
    try:
        inspect.signature(method).bind(*args)
    except TypeError:
        raise ExtensionError(f"{owner} has the wrong signature {inspect.signature(method)}") from None


def check_extension(registry: Any, obj: Any) -> None:
    """Raise :class:`ExtensionError` unless ``obj`` is a usable entry of ``registry``."""
    kind, name = registry.kind, getattr(obj, "name", "?")
    if registry is extensions.GOODNESS:
        from cffbench.ff.goodness import GoodnessFunction

        if not isinstance(obj, GoodnessFunction):
            raise ExtensionError(f"{kind} {name!r} is not a cffbench.ff.goodness.GoodnessFunction")
        _check_signature(f"{kind} {name!r}: __call__", obj.__call__, None)
        probe_goodness(obj)
    elif registry is extensions.VARIANTS:
        from cffbench.ff.variants import Variant

        if not isinstance(obj, Variant):
            raise ExtensionError(f"{kind} {name!r} is not a cffbench.ff.variants.Variant")
        if obj.end_to_end:
            raise ExtensionError(f"{kind} {name!r}: end-to-end variants cannot be plugins")
        _check_signature(f"{kind} {name!r}: logit_rule", obj.logit_rule, None, None, ())
        _check_signature(f"{kind} {name!r}: notes", obj.notes, None)
        probe_variant(obj)
    elif registry is extensions.NEGATIVES:
        from cffbench.ff.negatives import NegativeRule

        if not isinstance(obj, NegativeRule):
            raise ExtensionError(f"{kind} {name!r} is not a cffbench.ff.negatives.NegativeRule")
        _check_signature(f"{kind} {name!r}: draw", obj.draw, None, None, None)
        probe_negatives(obj)
    elif registry is extensions.DATASETS:
        from cffbench.data.registry import DatasetInfo

        if not isinstance(obj, DatasetInfo):
            raise ExtensionError(f"{kind} {name!r} is not a cffbench.data.registry.DatasetInfo")
        if bool(obj.torchvision_class) == (obj.decode is not None):
            raise ExtensionError(f"{kind} {name!r} needs exactly one reader: a torchvision_class "
                                 f"or its own decode(raw_dir)")
        if obj.decode is not None:
            _check_signature(f"{kind} {name!r}: decode", obj.decode, None)
        if obj.fetch is not None:
            _check_signature(f"{kind} {name!r}: fetch", obj.fetch, None, None)
        if obj.raw_md5s is not None and len(obj.raw_md5s) != len(obj.raw_files):
            raise ExtensionError(f"{kind} {name!r} has {len(obj.raw_md5s)} raw_md5s for "
                                 f"{len(obj.raw_files)} raw_files")


def probe_goodness(goodness: Any) -> None:
    """Call ``goodness`` on small activations ``(5, 4)`` and ``(2, 5, 4)`` (≥ 0, as after a ReLU,
    one row all zeros: a sample no unit responds to, common in training): it must return a finite
    tensor of shape ``(5,)`` / ``(2, 5)``, and the goodness of rows 2–4 alone must equal theirs
    in the whole (one goodness per sample). Where it gives its fast form or a manual gradient,
    both must equal the definition's (autograd through ``__call__``) on random pre-activations."""
    h = torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(0))
    h[:, 0] = 0.0                       # a dead row
    h[:, 1, :2] = 0.0                   # a row with some units off
    for probe in (h[0], h):
        shape = tuple(probe.shape)
        out = _call(goodness, f"fails on activations of shape {shape}", goodness, probe.clone())
        expected = shape[:-1]
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExtensionError(f"goodness function {goodness.name!r} returns {got} for "
                                 f"activations of shape {shape}; expected shape "
                                 f"{expected} (one goodness per row)")
        if not bool(torch.isfinite(out).all()):
            where = ("an all-zero row (a sample no unit responds to)"
                     if bool(torch.isfinite(out[..., 1:]).all()) else f"activations of shape {shape}")
            raise ExtensionError(f"goodness function {goodness.name!r} returns non-finite values "
                                 f"(nan or inf) for {where}")
    # the engine evaluates in chunks of rows and trains in row blocks and minibatches, so a
    # sample's goodness may depend on its own activations only
    part = _call(goodness, "fails on a subset of the rows", goodness, h[..., 2:, :].clone())
    if not torch.allclose(part, goodness(h.clone())[..., 2:].detach(), rtol=1e-5, atol=1e-7):
        raise ExtensionError(f"goodness function {goodness.name!r}: a sample's goodness depends "
                             f"on the other samples' activations (G(h[2:]) differs from "
                             f"G(h)[2:]); the engine evaluates and trains rows in blocks and "
                             f"minibatches, so goodness must be computed per sample")
    _probe_fast_forms(goodness)


def _call(goodness: Any, failing: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        raise ExtensionError(f"goodness function {goodness.name!r} {failing}: "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None


def _probe_fast_forms(goodness: Any) -> None:
    """``fast(h, ‖h‖)`` against ``__call__(h)``, and ``pre_activation_gradient_`` against autograd
    of ``Σ w · G(relu(pre))`` on ``(2, 6, 8)`` fp32 pre-activations (the engine's dtype; the
    tolerance admits rounding, not a wrong formula)."""
    from cffbench.ff.goodness import GoodnessFunction

    generator = torch.Generator().manual_seed(1)
    pre = torch.randn(2, 6, 8, generator=generator, requires_grad=True)
    weight = torch.randn(2, 6, generator=generator)
    h = torch.relu(pre)
    value = _call(goodness, "fails on activations of shape (2, 6, 8)", goodness, h)
    # the plain path trains through autograd on __call__: it must be differentiable and leave
    # its input alone (relu's output is needed for the backward pass)
    if not (isinstance(value, torch.Tensor) and value.requires_grad):
        raise ExtensionError(f"goodness function {goodness.name!r}: __call__(h) does not depend "
                             f"differentiably on h (no gradient reaches it)")
    (expected,) = _call(goodness, "cannot be differentiated by autograd (does __call__ change h "
                        "in place?)", torch.autograd.grad, (value * weight).sum(), pre)
    if type(goodness).fast is not GoodnessFunction.fast:
        probe = h.detach().clone()
        fast = _call(goodness, "fast() fails", goodness.fast, probe, probe.norm(dim=-1))
        if not torch.equal(probe, h.detach()):
            raise ExtensionError(f"goodness function {goodness.name!r}: fast(h, norm) changes h "
                                 f"in place (the engine still needs h)")
        if not (isinstance(fast, torch.Tensor) and fast.shape == value.shape
                and torch.allclose(fast, value.detach(), rtol=1e-4, atol=1e-6)):
            raise ExtensionError(f"goodness function {goodness.name!r}: fast(h, norm) differs "
                                 f"from __call__(h)")
    if goodness.has_manual_gradient:
        manual = _call(goodness, "pre_activation_gradient_() fails",
                       goodness.pre_activation_gradient_, h.detach().clone(), weight.clone())
        if not (isinstance(manual, torch.Tensor) and manual.shape == expected.shape
                and torch.allclose(manual, expected, rtol=1e-4, atol=1e-6)):
            largest = (float((manual - expected).abs().max())
                       if isinstance(manual, torch.Tensor) and manual.shape == expected.shape
                       else float("nan"))
            raise ExtensionError(f"goodness function {goodness.name!r}: pre_activation_gradient_ "
                                 f"differs from autograd through __call__ (largest difference "
                                 f"{largest:.3g}); fix it or remove it to train on autograd")


def probe_variant(variant: Any) -> None:
    """Build the variant's logit rule for ``TrainConfig(variant=name, **variant.probe_settings)``
    (default two layers), one run and a seed stack of 2, and ask it for layer 0's logits: it must
    be a :class:`~cffbench.ff.collaboration.LogitRule` giving finite ``(6,)`` / ``(2, 6)`` logits
    that gradients reach from ``own``."""
    from cffbench.ff.collaboration import LogitRule
    from cffbench.ff.config import TrainConfig

    name = variant.name
    try:
        config = TrainConfig(**{"hidden": (4, 4), **dict(variant.probe_settings), "variant": name})
    except Exception as exc:
        raise ExtensionError(f"variant {name!r}: probe_settings {variant.probe_settings!r} are "
                             f"not a valid configuration: {' '.join(str(exc).split())}") from None
    for seed_shape in ((), (2,)):
        try:
            rule = variant.logit_rule(config, torch.device("cpu"), seed_shape)
        except Exception as exc:
            raise ExtensionError(f"variant {name!r}: logit_rule() fails for a "
                                 f"{config.n_layers}-layer config (a variant that needs other "
                                 f"settings names them in probe_settings): {type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())}") from None
        if not isinstance(rule, LogitRule):
            raise ExtensionError(f"variant {name!r}: logit_rule() returns "
                                 f"{type(rule).__name__}, not a cffbench.ff.collaboration.LogitRule")
        own = torch.rand(*seed_shape, 6, generator=torch.Generator().manual_seed(2)) * 4
        own.requires_grad_()
        others = torch.stack([own.detach() + k for k in range(config.n_layers)], dim=-2)
        try:
            with torch.enable_grad():
                logits = rule.logits(0, own, others if rule.reads_other_layers else None)
        except Exception as exc:
            raise ExtensionError(f"variant {name!r}: logits() fails on goodness of shape "
                                 f"{tuple(own.shape)}: {type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())}") from None
        if (not isinstance(logits, torch.Tensor) or logits.shape != own.shape
                or not bool(torch.isfinite(logits).all()) or not logits.requires_grad):
            got = (f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
                   else type(logits).__name__)
            raise ExtensionError(f"variant {name!r}: logits() must return finite logits of the "
                                 f"goodness's shape {tuple(own.shape)} that depend on it (got {got})")


def probe_negatives(rule: Any) -> None:
    """Draw negatives for 12 labels of 3 classes: ``(12,)`` int64 labels in ``[0, 3)``."""
    y = torch.arange(12) % 3
    try:
        out = rule.draw(y, 3, torch.Generator().manual_seed(0))
    except Exception as exc:
        raise ExtensionError(f"negatives rule {rule.name!r} fails on 12 labels of 3 classes: "
                             f"{type(exc).__name__}: {exc}") from None
    if (not isinstance(out, torch.Tensor) or tuple(out.shape) != (12,) or out.dtype != torch.int64
            or bool(((out < 0) | (out >= 3)).any())):
        raise ExtensionError(f"negatives rule {rule.name!r} must return (N,) int64 labels in "
                             f"[0, n_classes)")


# ----------------------------------------------------------------------------- provenance
def plugins_of(effective: dict[str, Any], dataset: str) -> tuple[Plugin, ...]:
    """The plugins whose objects a run uses: of its effective configuration's registry-named
    settings (variant, goodness, negatives) and of its dataset; sorted by name, no duplicates."""
    from cffbench.ff.config import registry_of

    used = {}
    for key, value in effective.items():
        registry = registry_of(key)
        if registry is not None and (plugin := registry.origin(value)) is not None:
            used[plugin.record()["name"], plugin.sha256] = plugin
    if (plugin := extensions.DATASETS.origin(dataset)) is not None:
        used[plugin.name, plugin.sha256] = plugin
    return tuple(used[k] for k in sorted(used))


def ensure_loaded(plugins: tuple[Plugin, ...]) -> None:
    """In a worker process: load the plugin files a task uses (entry points load themselves)."""
    for plugin in plugins:
        if plugin.path is not None:
            load_plugin_file(plugin.path, plugin.sha256)


def unload_plugin_files() -> None:
    """Unregister every object a plugin file registered in this process and forget the files
    (a test's clean slate; entry points stay)."""
    for registry in extensions.REGISTRIES.values():
        for name in [n for n in registry.names()
                     if getattr(registry.origin(n), "path", None) is not None]:
            registry.unregister(name)
    _LOADED_FILES.clear()
