"""``create_model`` / ``list_models``: the one way to build a harmonizer.

Name forms:

- ``"charmnet_idih"``: a registered architecture (``harmonykit.list_models()``);
- ``"idih256.samsung_ihd4"``: architecture + weights tag (``list_models(pretrained=True)``);
- ``"hf-hub:org/name[@revision]"``: config and weights from the Hugging Face Hub;
- ``"local-dir:/path/to/folder"``: a folder written by :func:`harmonykit.save_pretrained`.
"""
from __future__ import annotations

import copy
import fnmatch
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn

from harmonykit.registry import MODELS, RegistryError, _as_list, _natural_key

__all__ = [
    "create_model",
    "list_models",
    "parse_model_name",
    "register_pretrained",
    "get_pretrained_cfg",
    "is_model",
]

# "arch.tag" -> pretrained cfg (weight source + provenance), see register_pretrained
_PRETRAINED: Dict[str, Dict[str, Any]] = {}
_WEIGHT_SOURCES = ("hf_hub_id", "file", "url", "state_dict")


def register_pretrained(name: str, **cfg: Any) -> None:
    """Declare weights for ``"arch.tag"``: ``hf_hub_id`` (+ ``revision``), ``file`` or ``url``,
    plus provenance (``license``, ``origin_url``, ``notes``, metric numbers...)."""
    arch, _, tag = name.partition(".")
    if not tag:
        raise ValueError(f"pretrained names are 'arch.tag', got {name!r}")
    _PRETRAINED[name] = dict(cfg, architecture=arch, tag=tag)


def get_pretrained_cfg(name: str) -> Dict[str, Any]:
    """A deep copy of the pretrained cfg of ``"arch.tag"``."""
    if name not in _PRETRAINED:
        arch = name.partition(".")[0]
        tags = sorted(k for k in _PRETRAINED if k.startswith(arch + "."))
        raise RegistryError(f"no weights tag {name!r}; available for {arch!r}: {tags or 'none'}")
    return copy.deepcopy(_PRETRAINED[name])


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

    Example:
        >>> import harmonykit
        >>> net = harmonykit.create_model("charmnet_idih", ch=8, max_channels=64)
        >>> net.domains
        ('rendered', 'real')
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    source, rest = parse_model_name(model_name)
    if source in ("hf-hub", "local-dir"):
        from harmonykit.hub import from_pretrained

        model = from_pretrained(rest if source == "hf-hub" else _local_dir(rest), cache_dir=cache_dir, strict=strict, _source=source, **kwargs)
    else:
        arch, _, tag = rest.partition(".")
        entry = MODELS.get(arch)
        model = entry(pretrained=pretrained, **kwargs)
        if pretrained or tag or pretrained_cfg_overlay:
            cfg = _resolve_pretrained_cfg(arch, tag, pretrained_cfg_overlay)
            if cfg:
                model.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}), **{k: v for k, v in cfg.items() if k != "state_dict"})
                if pretrained:
                    _load_pretrained(model, cfg, cache_dir=cache_dir, strict=strict)
    if checkpoint_path is not None:
        from harmonykit.convert import load_checkpoint

        load_checkpoint(model, checkpoint_path, strict=strict)
    return model


def _local_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"local-dir:{path}: no such folder")
    return path


def _resolve_pretrained_cfg(arch: str, tag: str, overlay: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if tag:
        cfg = get_pretrained_cfg(f"{arch}.{tag}")
    else:
        tags = [k for k in _PRETRAINED if k.startswith(arch + ".")]
        cfg = get_pretrained_cfg(tags[0]) if tags else {"architecture": arch}
    if overlay:
        cfg.update(overlay)
    return cfg


def _load_pretrained(model: nn.Module, cfg: Dict[str, Any], cache_dir=None, strict: bool = True) -> None:
    from harmonykit.convert import load_checkpoint, load_weights

    if cfg.get("state_dict") is not None:
        load_weights(model, cfg["state_dict"], strict=strict, source="pretrained_cfg state_dict")
    elif cfg.get("file"):
        load_checkpoint(model, cfg["file"], strict=strict)
    elif cfg.get("hf_hub_id"):
        from harmonykit.hub import download_weights

        load_checkpoint(model, download_weights(cfg["hf_hub_id"], revision=cfg.get("revision"), cache_dir=cache_dir, filename=cfg.get("hf_hub_filename")), strict=strict)
    elif cfg.get("url"):
        import torch.hub

        fname = os.path.basename(cfg["url"])
        dst = os.path.join(torch.hub.get_dir(), "checkpoints", "harmonykit", fname)
        if not os.path.isfile(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            torch.hub.download_url_to_file(cfg["url"], dst, progress=True)
        load_checkpoint(model, dst, strict=strict)
    else:
        name = f"{cfg.get('architecture')}" + (f".{cfg['tag']}" if cfg.get("tag") else "")
        raise RuntimeError(
            f"no pretrained weights are registered for {name!r}; pass checkpoint_path=..., "
            f"pretrained_cfg_overlay={{'file': ...}}, or an hf-hub:/local-dir: name"
        )


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
    names = [n for n in _PRETRAINED if n.partition(".")[0] in MODELS and any(fnmatch.fnmatchcase(n, p) for p in inc)]
    names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
    return sorted(names, key=_natural_key)


# Official releases. The Samsung iDIH-256 weights are published as a GitHub release file in
# the official layout; harmonykit converts them on load. (No CharmNet weights are published.)
register_pretrained(
    "idih256.samsung_ihd4",
    url="https://github.com/SamsungLabs/image_harmonization/releases/download/v1.0/idih256.pth",
    origin_url="https://github.com/SamsungLabs/image_harmonization",
    license="see the origin repository; trained on iHarmony4 (research use)",
    train_datasets=["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"],
    metric_protocol="idih",
    metrics={"All": {"MSE": 30.70, "PSNR": 36.99}},
    notes="official checkpoint in the Samsung key layout; converted on load",
)
