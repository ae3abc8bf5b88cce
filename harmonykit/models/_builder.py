"""One construction path for every registered model: backbone [+ adapter] + configs."""
from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Optional

import torch.nn as nn

from harmonykit.models.idih import default_pretrained_cfg
from harmonykit.registry import ADAPTERS, BACKBONES

__all__ = ["build_harmonizer", "build_model"]

_ADAPTER_ARGS = ("split_depth", "domains", "default_domain")


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


def build_model(
    name: str,
    defaults: Dict[str, Any],
    kwargs: Dict[str, Any],
    pretrained_cfg: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """Merge ``defaults`` with user ``kwargs`` (user wins), build, and attach configs.

    Sets ``model.architecture`` (the registered name), ``model.model_args`` (the resolved
    arguments: ``create_model(architecture, **model_args)`` rebuilds the same graph) and
    ``model.pretrained_cfg``.
    """
    args = dict(defaults)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    net = build_harmonizer(_model_name=f"model {name!r}", **args)
    net.architecture = name
    net.model_args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    depth = getattr(net, "depth", 7)
    cfg = default_pretrained_cfg(depth)
    if pretrained_cfg:
        cfg.update(copy.deepcopy(pretrained_cfg))
    net.pretrained_cfg = cfg
    return net
