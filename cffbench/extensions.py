"""The four extension kinds and their registries: variants, goodness functions, negative-data
rules and datasets.

Each kind has one :class:`Registry`, a read-only mapping from name to object. The built-ins are
registered through it exactly as a plugin's objects are; the modules that define them are
imported on the first look-up (``cffbench.ff.variants`` for :data:`VARIANTS`, ...), so this module
imports nothing of the engine and ``cffbench.ff.config`` can validate names against it.

Registering
-----------
A plugin module registers an object (or a class, which is instantiated without arguments) with
the registry's :meth:`Registry.register`, usable as a decorator::

    from cffbench.extensions import GOODNESS
    from cffbench.ff.goodness import GoodnessFunction

    @GOODNESS.register
    class SumSquares(GoodnessFunction):
        name = "sum_squares"
        def __call__(self, h):              # (..., N, H) -> (..., N)
            return h.pow(2).sum(dim=-1)

What each kind must provide:

- :data:`VARIANTS`: a :class:`cffbench.ff.variants.Variant` (``name``, ``logit_rule(config,
  device, seed_shape=())``, ``notes(config)``);
- :data:`GOODNESS`: a :class:`cffbench.ff.goodness.GoodnessFunction` (``name``, ``__call__(h)``);
- :data:`NEGATIVES`: a :class:`cffbench.ff.negatives.NegativeRule` (``name``, ``draw(y, n_classes,
  generator)`` -> ``(N,)`` labels, ``redraw_each_epoch``);
- :data:`DATASETS`: a :class:`cffbench.data.registry.DatasetInfo` (its ``name`` is the key).

A name already registered (a built-in's or another plugin's) is refused with
:class:`~cffbench.errors.ExtensionError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticCustomError

from cffbench.errors import ExtensionError

T = TypeVar("T")

#: While a plugin is imported: ``[plugin, [(registry, name), ...]]`` (see :func:`registering_for`).
_RECORDING: list = []
_ENTRY_POINTS = {"loaded": False}


@contextmanager
def registering_for(plugin: Any):
    """Attribute every name registered inside the block to ``plugin`` (a
    :class:`cffbench.plugins.Plugin`); yields the list of ``(registry, name)`` registered."""
    added: list = []
    _RECORDING.append((plugin, added))
    try:
        yield added
    finally:
        _RECORDING.remove((plugin, added))


def _or_list(names: list[str]) -> str:
    """``'a', 'b' or 'c'``: how pydantic lists a Literal's values (so the words stay the same)."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class Registry(Mapping[str, T], Generic[T]):
    """The registered objects of one extension kind, by name, in registration order.

    Parameters
    ----------
    kind : what one entry is, in messages (``"variant"``).
    builtin_module : the module whose import registers the built-ins.
    """

    def __init__(self, kind: str, builtin_module: str) -> None:
        self.kind = kind
        self.builtin_module = builtin_module
        self._entries: dict[str, T] = {}
        self._builtins: set[str] = set()
        self._origins: dict[str, Any] = {}
        self._loading_builtins = False

    def _load_builtins(self) -> None:
        if not self._builtins and not self._loading_builtins:
            self._loading_builtins = True
            try:
                importlib.import_module(self.builtin_module)
            finally:
                self._loading_builtins = False
        if not _ENTRY_POINTS["loaded"] and not _RECORDING:
            # installed packages' plugins, once per process (worker processes too)
            _ENTRY_POINTS["loaded"] = True
            importlib.import_module("cffbench.plugins").load_entry_points()

    def register(self, obj: Any, *, builtin: bool = False) -> Any:
        """Register ``obj`` under ``obj.name`` and return it (so it works as a decorator).

        A class is instantiated without arguments and the class is returned. Raises
        :class:`~cffbench.errors.ExtensionError` when the name is taken or missing.
        """
        instance = obj() if isinstance(obj, type) else obj
        name = getattr(instance, "name", None)
        if not isinstance(name, str) or not name:
            raise ExtensionError(f"a {self.kind} must have a non-empty string attribute 'name' "
                                 f"(got {name!r})")
        if not builtin:
            self._load_builtins()
        if name in self._entries:
            owner = "a built-in" if name in self._builtins else "an already registered"
            raise ExtensionError(f"{self.kind} {name!r} clashes with {owner} {self.kind} of that "
                                 f"name")
        self._entries[name] = instance
        if builtin:
            self._builtins.add(name)
        elif _RECORDING:
            plugin, added = _RECORDING[-1]
            self._origins[name] = plugin
            added.append((self, name))
        return obj

    def __setitem__(self, name: str, obj: T) -> None:
        """Swap the entry ``name`` for ``obj`` in place (a test's stand-in, a wrapper around a
        built-in); ``obj.name`` must be ``name``. A new name goes through :meth:`register`, so
        nothing is added, or a built-in shadowed, by assignment by accident."""
        self._load_builtins()
        if _RECORDING:   # a plugin file or entry point is being imported
            raise ExtensionError(f"a plugin cannot replace the {self.kind} {name!r}: its runs "
                                 f"would be stored as the original's; register a new name")
        if name not in self._entries:
            raise ExtensionError(f"no {self.kind} {name!r} to replace; register() adds new ones")
        if getattr(obj, "name", name) != name:
            raise ExtensionError(f"the replacement for {self.kind} {name!r} is named "
                                 f"{getattr(obj, 'name')!r}")
        self._entries[name] = obj

    def unregister(self, name: str) -> None:
        """Remove a registered plugin object (built-ins cannot be removed)."""
        if name in self._builtins:
            raise ExtensionError(f"the built-in {self.kind} {name!r} cannot be unregistered")
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def origin(self, name: str) -> Any:
        """The :class:`cffbench.plugins.Plugin` that registered ``name`` (``None``: a built-in, or
        an object registered in-process outside any plugin)."""
        return self._origins.get(name)

    def is_builtin(self, name: str) -> bool:
        self._load_builtins()
        return name in self._builtins

    def names(self) -> list[str]:
        self._load_builtins()
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        self._load_builtins()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    # one registry per kind: identity, not contents, makes two equal (types in Annotated hash it)
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def check_name(self, value: Any) -> str:
        """``value`` if it names a registered entry, else a pydantic error worded as a
        ``Literal``'s (``Input should be 'ff', 'f-cff', 'a-cff' or 'bp'``): the validator of
        ``TrainConfig.variant`` and the other registry-named fields."""
        names = self.names()
        if isinstance(value, str) and value in names:
            return value
        raise PydanticCustomError("literal_error", "Input should be {expected}",
                                  {"expected": _or_list(names)})


#: The training variants (``TrainConfig.variant``).
VARIANTS: Registry = Registry("variant", "cffbench.ff.variants")
#: The goodness functions (``TrainConfig.goodness``).
GOODNESS: Registry = Registry("goodness function", "cffbench.ff.goodness")
#: The negative-data rules (``TrainConfig.negatives``).
NEGATIVES: Registry = Registry("negatives rule", "cffbench.ff.negatives")
#: The datasets (a study's ``[data] datasets``).
DATASETS: Registry = Registry("dataset", "cffbench.data.registry")

#: Every registry by the entry-point group that extends it.
REGISTRIES: dict[str, Registry] = {
    "cffbench.variants": VARIANTS, "cffbench.goodness": GOODNESS,
    "cffbench.negatives": NEGATIVES, "cffbench.datasets": DATASETS}
