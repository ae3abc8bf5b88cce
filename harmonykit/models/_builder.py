"""One construction path for every registered model: backbone [+ adapter] + configs.

- :func:`register_model` registers an entrypoint ``fn(pretrained=False, **kwargs)`` in
  ``MODELS`` (timm's ``@register_model``);
- :func:`build_harmonizer` builds a ``BACKBONES`` entry and wraps it in an ``ADAPTERS`` entry;
- :func:`build_model` merges the entrypoint's defaults with user kwargs, builds, and attaches
  ``architecture``, ``model_args`` and ``pretrained_cfg`` (the architecture's
  :class:`~harmonykit.models._pretrained.PretrainedCfg` as a dict).
"""
from __future__ import annotations

import contextvars
import inspect
from typing import Any, Callable, Dict, Optional

import torch.nn as nn

from harmonykit.models._pretrained import PretrainedCfg, default_tag, get_arch_cfg, get_pretrained_cfg, load_pretrained
from harmonykit.registry import ADAPTERS, BACKBONES, MODELS

__all__ = [
    "build_harmonizer",
    "build_model",
    "register_model",
    "finalize_model",
    "pop_pretrained_opts",
    "model_arguments",
]

_PRETRAINED_OPTS = ("pretrained_cfg", "cache_dir", "pretrained_strict")


def pop_pretrained_opts(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Remove the weight-loading options ``create_model`` passes to an entrypoint
    (``pretrained_cfg``, ``cache_dir``, ``pretrained_strict``) from ``kwargs`` and return them
    in :func:`finalize_model`'s names."""
    return {
        "pretrained_cfg": kwargs.pop("pretrained_cfg", None),
        "cache_dir": kwargs.pop("cache_dir", None),
        "strict": kwargs.pop("pretrained_strict", True),
    }


def register_model(fn: Optional[Callable[..., nn.Module]] = None, *, name: Optional[str] = None) -> Any:
    """Register a model entrypoint in ``MODELS`` (``@register_model`` or ``@register_model(name=...)``)."""

    def _do(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        return MODELS.register(f, name=name or f.__name__)

    return _do if fn is None else _do(fn)


def _accepted(fn: Any) -> set:
    target = fn.__init__ if isinstance(fn, type) else fn
    params = inspect.signature(target).parameters
    return {n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_harmonizer(
    backbone: str = "idih",
    adapter: Optional[str] = None,
    *,
    _model_name: str = "model",
    **kwargs: Any,
) -> nn.Module:
    """Build ``backbone`` (a BACKBONES name) and wrap it with ``adapter`` (an ADAPTERS name).

    Keyword arguments go to the backbone, except ``split_depth``, ``domains`` and
    ``default_domain`` which go to the adapter. Unknown keywords raise ``TypeError`` naming
    the model and listing what it accepts.
    """
    bb_cls = BACKBONES.get(backbone)
    bb_ok = _accepted(bb_cls)
    ad_cls = ADAPTERS.get(adapter) if adapter else None
    ad_ok = (_accepted(ad_cls) - {"backbone"}) if ad_cls else set()
    unknown = sorted(k for k in kwargs if k not in bb_ok and k not in ad_ok)
    if unknown:
        raise TypeError(
            f"{_model_name}: unexpected argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(bb_ok | ad_ok))}"
        )
    bb_kwargs = {k: v for k, v in kwargs.items() if k in bb_ok}
    ad_kwargs = {k: v for k, v in kwargs.items() if k in ad_ok and k not in bb_ok}
    net = bb_cls(**bb_kwargs)
    if ad_cls is not None:
        if "domains" in ad_kwargs and isinstance(ad_kwargs["domains"], list):
            ad_kwargs["domains"] = tuple(ad_kwargs["domains"])
        net = ad_cls(backbone=net, **ad_kwargs)
    return net


def finalize_model(
    net: nn.Module,
    name: str,
    args: Dict[str, Any],
    pretrained: bool = False,
    pretrained_cfg: Optional[PretrainedCfg] = None,
    cache_dir: Optional[str] = None,
    strict: bool = True,
) -> nn.Module:
    """Attach ``architecture``, ``model_args`` (``create_model(architecture, **model_args)``
    rebuilds the same graph) and ``pretrained_cfg`` (the architecture's config as a dict,
    with the size rule of the built network); with ``pretrained`` load the weights."""
    if _PROBE.get():  # model_arguments() of a directly constructed model (built on the meta device)
        own = _init_parameters(type(net))
        takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(type(net).__init__).parameters.values())
        # trusted only when the entrypoint passes its arguments straight to the class
        raise _ArgumentsProbe(None if takes_any or set(args) - set(own) else {**own, **_as_parameters(args)})
    net.architecture = name
    net.model_args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    cfg = get_arch_cfg(name).to_dict()
    cfg["architecture"] = name
    for key in ("size_divisor", "min_size"):
        if hasattr(net, key):
            cfg[key] = int(getattr(net, key))
    if hasattr(net, "min_size") and "input_size" in cfg:
        side = max(int(net.min_size), int(cfg["input_size"][-1]))
        side = -(-side // int(cfg["size_divisor"])) * int(cfg["size_divisor"])
        cfg["input_size"] = (3, side, side)
    net.pretrained_cfg = cfg
    net.has_trained_weights = False
    if pretrained:
        wcfg = pretrained_cfg
        if wcfg is None:
            tag = default_tag(name)
            wcfg = get_pretrained_cfg(tag) if tag else get_arch_cfg(name)
        load_pretrained(net, wcfg, cache_dir=cache_dir, strict=strict)
        net.pretrained_cfg = dict(cfg, **wcfg.to_dict())
    return net


def build_model(name: str, defaults: Dict[str, Any], kwargs: Dict[str, Any], pretrained: bool = False) -> nn.Module:
    """Merge ``defaults`` with user ``kwargs`` (user wins; ``None`` keeps the default), build
    with :func:`build_harmonizer`, :func:`finalize_model`, and with ``pretrained`` load the
    weights of ``kwargs["pretrained_cfg"]`` (default: the architecture's first weight tag)."""
    kwargs = dict(kwargs)
    opts = pop_pretrained_opts(kwargs)
    args = dict(defaults)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    if _PROBE.get():
        raise _ArgumentsProbe(_parameters(args))
    net = build_harmonizer(_model_name=f"model {name!r}", **args)
    return finalize_model(net, name, args, pretrained=pretrained, **opts)


# --- build-free argument discovery (recipes validate model kwargs at load time) ---------------
_PROBE: contextvars.ContextVar = contextvars.ContextVar("harmonykit_model_probe", default=False)


class _ArgumentsProbe(Exception):
    def __init__(self, params: Optional[Dict[str, inspect.Parameter]]) -> None:
        super().__init__("argument probe")
        self.params = params


def _init_parameters(cls: Any) -> Dict[str, inspect.Parameter]:
    target = cls.__init__ if isinstance(cls, type) else cls
    return {
        n: p
        for n, p in inspect.signature(target).parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _parameters(args: Dict[str, Any]) -> Dict[str, inspect.Parameter]:
    """Backbone and adapter parameters of a :func:`build_model` call, defaults = ``args``."""
    params = _init_parameters(BACKBONES.get(args.get("backbone", "idih")))
    if args.get("adapter"):
        params.update({k: v for k, v in _init_parameters(ADAPTERS.get(args["adapter"])).items() if k != "backbone"})
    params.update(_as_parameters({k: v for k, v in args.items() if k not in ("backbone", "adapter")}))
    return params


def _as_parameters(args: Dict[str, Any]) -> Dict[str, inspect.Parameter]:
    return {k: inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in args.items()}


def model_arguments(name: str) -> Optional[Dict[str, inspect.Parameter]]:
    """The keyword arguments the ``MODELS`` entry ``name`` accepts, found without building it.

    Entrypoints that declare their arguments give their signature; ``fn(pretrained, **kwargs)``
    entrypoints are called in probe mode: :func:`build_model` stops before construction and
    reports the backbone's and adapter's constructor parameters (defaults: the entrypoint's);
    an entrypoint that constructs its network directly runs on the meta device (no memory, no
    init cost) and :func:`finalize_model` reports the network class's parameters. Returns
    ``None`` when it cannot be told (the model builder checks its arguments at build time).
    """
    fn = MODELS.get(name)
    params = _init_parameters(fn)
    if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        return params
    token = _PROBE.set(True)
    try:
        import torch

        with torch.device("meta"):  # an entrypoint that builds anyway allocates nothing
            fn()
    except _ArgumentsProbe as probe:
        if probe.params is None:
            return None
        return {**{k: p for k, p in params.items() if not k.startswith("_")}, **probe.params}
    except Exception:  # noqa: BLE001 - not a build_model entrypoint: checked at build time
        return None
    finally:
        _PROBE.reset(token)
    return None
