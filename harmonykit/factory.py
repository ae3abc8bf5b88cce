"""``create_model`` / ``list_models``: the one way to build a harmonizer.

Name forms:

- ``"charmnet_idih"``: a registered architecture (``harmonykit.list_models()``);
- ``"idih256.samsung_ihd4"``: architecture + weights tag (``list_models(pretrained=True)``);
- ``"hf-hub:org/name[@revision]"``: config and weights from the Hugging Face Hub;
- ``"local-dir:/path/to/folder"``: a folder written by :func:`harmonykit.save_pretrained`.
"""
from __future__ import annotations

import fnmatch
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn

from harmonykit.models._pretrained import (
    PretrainedCfg,
    WeightsUnavailableError,
    default_tag,
    load_pretrained,
    get_pretrained_cfg,
    pretrained_tags,
    register_pretrained,
)
from harmonykit.registry import MODELS, _as_list, _natural_key

__all__ = [
    "WeightsUnavailableError",
    "from_pretrained",
    "create_model",
    "list_models",
    "parse_model_name",
    "register_pretrained",
    "get_pretrained_cfg",
    "is_model",
]

def is_model(name: str) -> bool:
    return name.partition(".")[0] in MODELS


def parse_model_name(name: str) -> Tuple[str, str]:
    """Split a model name into (source, rest): source is ``"registry"``, ``"hf-hub"`` or
    ``"local-dir"``. A path-like name without a prefix raises, suggesting the prefix."""
    if name.startswith("hf_hub:"):
        name = "hf-hub:" + name[len("hf_hub:"):]
    for prefix in ("hf-hub:", "local-dir:"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if not rest:
                raise ValueError(f"model name {name!r} has an empty {prefix[:-1]} reference")
            return prefix[:-1], rest
    if any(c in name for c in "/\\:") or os.path.isdir(name):
        if os.path.isdir(name):
            hint = f"'local-dir:{name}'"
        else:
            hint = f"'hf-hub:{name}' for a Hub repository or 'local-dir:{name}' for a folder"
        raise ValueError(f"model name {name!r} looks like a path or repository id; did you mean {hint}?")
    return "registry", name


def create_model(
    model_name: str,
    pretrained: bool = False,
    checkpoint_path: Optional[Union[str, os.PathLike]] = None,
    pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    strict: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build a harmonizer by name, optionally with weights.

    Args:
        model_name: registry name (``"charmnet_idih"``), ``"arch.tag"``,
            ``"hf-hub:org/name@rev"`` or ``"local-dir:/path"``.
        pretrained: load the weights of the tag (or the architecture's default tag).
        checkpoint_path: load weights from a file after construction: our
            ``model.safetensors``, a training checkpoint, or an official iDIH / CharmNet ``.pth``.
        pretrained_cfg_overlay: fields replacing the pretrained cfg (e.g. ``{"file": path}``).
        cache_dir: Hugging Face cache folder for ``hf-hub:`` names.
        strict: refuse weights that do not match the architecture exactly.
        **kwargs: model arguments overriding the entrypoint defaults; ``None`` values are
            dropped (so recipe/CLI nulls keep the defaults).

    Returns:
        the model in eval mode (call ``.train()`` to train), with ``has_trained_weights``
        telling whether any weights were loaded (random weights otherwise).

    Example:
        >>> import harmonykit
        >>> net = harmonykit.create_model("charmnet_idih", ch=8, max_channels=64)
        >>> net.domains
        ('rendered', 'real')
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    source, rest = parse_model_name(model_name)
    if source in ("hf-hub", "local-dir"):
        model = from_pretrained(rest if source == "hf-hub" else _local_dir(rest), cache_dir=cache_dir, strict=strict, _source=source, **kwargs)
    else:
        arch, _, tag = rest.partition(".")
        entry = MODELS.get(arch)
        cfg = _resolve_pretrained_cfg(arch, tag, pretrained_cfg_overlay) if (pretrained or tag or pretrained_cfg_overlay) else None
        extra = {"pretrained_cfg": cfg, "cache_dir": cache_dir, "pretrained_strict": strict} if cfg is not None else {}
        model = entry(pretrained=pretrained, **extra, **kwargs)  # build_model loads the weights
        if cfg is not None:
            model.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}), **cfg.to_dict())
            if pretrained and not getattr(model, "has_trained_weights", False) and not getattr(model, "weight_free", False):
                load_pretrained(model, cfg, cache_dir=cache_dir, strict=strict)  # entrypoints outside build_model
    weights_loaded = source in ("hf-hub", "local-dir") or pretrained or getattr(model, "weight_free", False)
    if checkpoint_path is not None:
        from harmonykit.convert import load_checkpoint

        load_checkpoint(model, checkpoint_path, strict=strict)
        weights_loaded = True
    model.has_trained_weights = bool(weights_loaded)
    return model.eval()  # ready for inference; trainers call .train()


def from_pretrained(
    id_or_dir: Union[str, os.PathLike],
    revision: Optional[str] = None,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    strict: bool = True,
    map_location: Union[str, Any] = "cpu",
    _source: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Load a checkpoint folder or a Hub repo (``"org/name"`` or ``"org/name@rev"``).

    The architecture must be registered locally (the Hub holds config and weights, never
    code). ``kwargs`` override ``model_args``; loading is strict, so an override that changes
    the parameter shapes fails loudly. Returns the model in eval mode.
    """
    from harmonykit.convert import load_checkpoint
    from harmonykit.hub import resolve_checkpoint

    cfg, weights = resolve_checkpoint(id_or_dir, revision=revision, cache_dir=cache_dir, source=_source)
    args = dict(cfg.get("model_args", {}))
    args.update(kwargs)
    model = create_model(cfg["architecture"], **args)
    if isinstance(cfg.get("pretrained_cfg"), dict):
        model.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}), **cfg["pretrained_cfg"])
    load_checkpoint(model, weights, strict=strict)
    model.has_trained_weights = True
    return model.to(map_location).eval()


def _local_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"local-dir:{path}: no such folder")
    return path


def _resolve_pretrained_cfg(arch: str, tag: str, overlay: Optional[Dict[str, Any]]) -> PretrainedCfg:
    if tag:
        cfg = get_pretrained_cfg(f"{arch}.{tag}")
    else:
        dt = default_tag(arch)
        cfg = get_pretrained_cfg(dt) if dt else get_pretrained_cfg(arch)
    if overlay:
        cfg = cfg.replace(**overlay)
    return cfg


def list_models(
    filter: Union[str, Sequence[str]] = "*",
    pretrained: bool = False,
    exclude_filters: Union[None, str, Sequence[str]] = None,
) -> List[str]:
    """Registered model names matching fnmatch ``filter`` (natural order).

    With ``pretrained=True`` only names that have weights are listed, as ``arch.tag``.
    """
    if not pretrained:
        return MODELS.list(filter, exclude_filters)
    inc = _as_list(filter) or ["*"]
    inc = inc + [p + ".*" for p in inc if "." not in p]
    exc = _as_list(exclude_filters)
    names = [n for n in pretrained_tags() if n.partition(".")[0] in MODELS and any(fnmatch.fnmatchcase(n, p) for p in inc)]
    names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
    return sorted(names, key=_natural_key)
