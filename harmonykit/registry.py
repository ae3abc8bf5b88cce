"""Component registries.

One :class:`Registry` object per component kind (timm-style naming, detectron2-style
objects). Each registry maps a name to a callable (a class or a function) that builds the
component; ``create(name, **kwargs)`` calls it.

Plugins from other installed distributions register through the entry-point group
``harmonykit.plugins``. Each entry point names a module (imported for its registration
side effects) or a callable (imported, then called with no arguments). They are loaded
lazily, once, on the first lookup in any registry.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import logging
import re
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

__all__ = [
    "Registry",
    "RegistryError",
    "PLUGIN_GROUP",
    "load_plugins",
    "BACKBONES",
    "ADAPTERS",
    "DISCRIMINATORS",
    "STYLE_HEADS",
    "LOSSES",
    "MODELS",
    "DATASETS",
    "METRICS",
    "AUGMENTATIONS",
    "CHECKPOINT_LAYOUTS",
]

_logger = logging.getLogger(__name__)

PLUGIN_GROUP = "harmonykit.plugins"

_plugins_loaded = False  # set once every entry point of PLUGIN_GROUP has been loaded
_plugins_lock = threading.RLock()
_plugin_errors: Dict[str, str] = {}  # entry-point name -> error message, for diagnostics


class RegistryError(KeyError):
    """An unknown or duplicate name in a registry (a ``KeyError`` with a readable message)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def _natural_key(name: str) -> List[Union[int, str]]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name.lower())]


def _as_list(x: Union[None, str, Iterable[str]]) -> List[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def load_plugins(force: bool = False) -> Dict[str, str]:
    """Import every entry point of the ``harmonykit.plugins`` group (once).

    Returns the errors met, as ``{entry point name: message}``; a broken plugin is logged
    and skipped so that one bad distribution cannot break the library.
    """
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded and not force:
            return dict(_plugin_errors)
        _plugins_loaded = True  # set first: plugins import harmonykit and look names up
        for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, type(importlib)):
                    obj()
            except Exception as e:  # noqa: BLE001 - a plugin must not break the library
                msg = f"{type(e).__name__}: {e}"
                _plugin_errors[ep.name] = msg
                _logger.warning("harmonykit plugin %r (%s) failed to load: %s", ep.name, ep.value, msg)
        return dict(_plugin_errors)


class Registry:
    """A name -> builder mapping for one component kind.

    Args:
        kind: what the registry holds, used in messages (``"backbone"``).
        doc: the call contract of the registered builders.

    Example:
        >>> REG = Registry("widget")
        >>> @REG.register
        ... def small(width: int = 8):
        ...     return ("small", width)
        >>> REG.create("small", width=4)
        ('small', 4)
    """

    def __init__(self, kind: str, doc: str = "", locations: Sequence[str] = ()) -> None:
        self.kind = kind
        self.__doc__ = doc or f"Registry of {kind} builders."
        self._entries: Dict[str, Callable[..., Any]] = {}
        # built-in modules that register into this registry, imported on the first lookup
        self._locations: List[str] = list(locations)

    # --- registration -------------------------------------------------------------
    def register(
        self,
        obj_or_name: Union[None, str, Callable[..., Any]] = None,
        *,
        name: Optional[str] = None,
        force: bool = False,
    ) -> Any:
        """Register a builder. Usable as ``@REG.register``, ``@REG.register()``,
        ``@REG.register("name")`` or ``REG.register(fn, name="x")``.

        The name defaults to the function or class ``__name__``. A name that is already
        taken raises :class:`RegistryError` unless ``force=True``.
        """
        if isinstance(obj_or_name, str):
            if name is not None:
                raise TypeError("give the name once: positionally or as name=")
            name, obj_or_name = obj_or_name, None

        def _do(obj: Callable[..., Any]) -> Callable[..., Any]:
            key = name or getattr(obj, "__name__", None)
            if not key or not isinstance(key, str):
                raise ValueError(f"cannot infer a {self.kind} name for {obj!r}; pass name=")
            if key in self._entries and not force and self._entries[key] is not obj:
                raise RegistryError(
                    f"{self.kind} {key!r} is already registered (by "
                    f"{_qualname(self._entries[key])}); pass force=True to replace it"
                )
            self._entries[key] = obj
            return obj

        if obj_or_name is None:
            return _do
        return _do(obj_or_name)

    def unregister(self, name: str) -> Callable[..., Any]:
        """Remove and return a builder (for tests and plugin reloads)."""
        self._ensure_plugins()
        if name not in self._entries:
            raise self._unknown(name)
        return self._entries.pop(name)

    # --- lookup -------------------------------------------------------------------
    def _ensure_plugins(self) -> None:
        while self._locations:
            importlib.import_module(self._locations.pop(0))
        if not _plugins_loaded:
            load_plugins()

    def _unknown(self, name: str) -> RegistryError:
        close = difflib.get_close_matches(str(name), list(self._entries), n=5, cutoff=0.5)
        if not close:
            close = [n for n in self._entries if str(name).lower() in n.lower()][:5]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return RegistryError(
            f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: "
            f"{', '.join(self.list()) or '(none)'}"
        )

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; unknown names raise with the closest matches."""
        self._ensure_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs``; unexpected kwargs raise naming the component."""
        builder = self.get(name)
        try:
            return builder(**kwargs)
        except TypeError as e:
            if "unexpected keyword argument" in str(e) or "positional argument" in str(e):
                raise TypeError(f"{self.kind} {name!r}: {e}") from e
            raise

    def list(
        self,
        filter: Union[str, Sequence[str]] = "*",
        exclude: Union[None, str, Sequence[str]] = None,
    ) -> List[str]:
        """Registered names matching any ``filter`` and no ``exclude`` fnmatch pattern,
        in natural order."""
        self._ensure_plugins()
        inc = _as_list(filter) or ["*"]
        exc = _as_list(exclude)
        names = [n for n in self._entries if any(fnmatch.fnmatchcase(n, p) for p in inc)]
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
        return sorted(names, key=_natural_key)

    def __contains__(self, name: object) -> bool:
        self._ensure_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure_plugins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


BACKBONES = Registry(
    "backbone",
    "Harmonization backbones: ``create(name, **kw) -> nn.Module`` exposing ordered encoder and "
    "decoder stages (see harmonykit.models.idih.UNetBackbone).",
)
ADAPTERS = Registry(
    "domain adapter",
    "Domain adapters: ``create(name, backbone=..., split_depth=k, domains=(...)) -> nn.Module`` "
    "that turns a backbone into a (multi-)domain harmonizer.",
)
DISCRIMINATORS = Registry(
    "discriminator",
    "Domain discriminators: ``create(name, in_channels=C, width=W) -> nn.Module`` mapping "
    "features (B, C, h, w) to a score map (B, 1, h, w).",
)
STYLE_HEADS = Registry(
    "style head",
    "Style classifiers: ``create(name, in_channels=C, width=W, num_styles=K) -> nn.Module`` "
    "mapping features (B, C, h, w) to logits (B, K).",
)
LOSSES = Registry("loss", "Loss terms: ``create(name, **kw) -> nn.Module``.", locations=["harmonykit.losses"])
MODELS = Registry(
    "model",
    "Model entrypoints: ``fn(pretrained=False, **kwargs) -> nn.Module``; use "
    "harmonykit.create_model rather than calling them directly.",
    locations=["harmonykit.models"],
)
CHECKPOINT_LAYOUTS = Registry(
    "checkpoint layout",
    "State-dict key layouts (``harmonykit.convert.CheckpointLayout``), registered by the model files.",
    locations=["harmonykit.models"],
)
DATASETS = Registry(
    "dataset", "Datasets: ``create(name, **kw) -> torch.utils.data.Dataset`` of sample dicts.", locations=["harmonykit.data"]
)
METRICS = Registry(
    "metric protocol", "Metric protocols: ``create(name) -> protocol object``.", locations=["harmonykit.eval.metrics"]
)
AUGMENTATIONS = Registry(
    "augmentation", "Batch augmentations: ``create(name, **kw) -> nn.Module``.", locations=["harmonykit.data"]
)
