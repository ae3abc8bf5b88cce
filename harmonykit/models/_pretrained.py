"""Weights metadata in one place: :class:`PretrainedCfg` (timm style) and the tag table.

Each model file declares its configs next to its entrypoints::

    default_cfgs = {
        "idih256": PretrainedCfg(paper_name=..., min_size=256, size_divisor=128),
        "idih256.samsung_ihd4": PretrainedCfg(url=..., license=..., metrics=...),
    }
    register_pretrained_cfgs(default_cfgs)

A name without a tag is the architecture's own config (input conventions, paper); a name
``"arch.tag"`` adds a weight source (``hf_hub_id``, ``file``, ``package_file``, ``url`` or
``state_dict``) and its provenance. ``model.pretrained_cfg`` is the merged dict.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch.nn as nn

from harmonykit.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "PretrainedCfg",
    "register_pretrained_cfgs",
    "register_pretrained",
    "get_pretrained_cfg",
    "get_arch_cfg",
    "pretrained_tags",
    "default_tag",
    "load_pretrained",
    "WeightsUnavailableError",
]

WEIGHT_SOURCES = ("state_dict", "package_file", "file", "hf_hub_id", "url")


@dataclass
class PretrainedCfg:
    """What a user needs to know about a model's weights and inputs.

    Weight source (at most one is used, in this order): ``state_dict``, ``package_file``
    (a path inside the installed ``harmonykit`` package), ``file``, ``hf_hub_id`` (+
    ``revision``, ``hf_hub_filename``), ``url``.
    """

    architecture: str = ""
    tag: str = ""
    # weights
    state_dict: Any = None
    package_file: Optional[str] = None
    file: Optional[str] = None
    hf_hub_id: Optional[str] = None
    hf_hub_filename: Optional[str] = None
    revision: Optional[str] = None
    url: Optional[str] = None
    # provenance
    license: Optional[str] = None
    origin_url: Optional[str] = None
    paper_ids: Optional[str] = None
    paper_name: Optional[str] = None
    train_datasets: Optional[List[str]] = None
    metric_protocol: str = "charmnet"
    metrics: Optional[Dict[str, Any]] = None
    notes: Optional[str] = None
    card: Optional[str] = None
    # inputs
    input_size: Tuple[int, int, int] = (3, 256, 256)
    size_divisor: int = 1
    min_size: int = 1
    value_range: Tuple[float, float] = (0.0, 1.0)
    color_space: str = "rgb"
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    mask_convention: str = "foreground=1, (B, 1, H, W) float in [0, 1]"
    # a narrow configuration of the architecture (tests, smoke runs)
    tiny_args: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def has_weights(self) -> bool:
        return any(getattr(self, k) is not None for k in WEIGHT_SOURCES)

    def to_dict(self, drop_state_dict: bool = True) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if drop_state_dict:
            d.pop("state_dict")
        extra = d.pop("extra")
        d = copy.deepcopy(d)
        d.update(copy.deepcopy(extra))
        return d

    def replace(self, **kw: Any) -> "PretrainedCfg":
        known = {f.name for f in fields(self)}
        extra = dict(self.extra)
        extra.update({k: v for k, v in kw.items() if k not in known})
        vals = {f.name: getattr(self, f.name) for f in fields(self)}
        vals.update({k: v for k, v in kw.items() if k in known})
        vals["extra"] = extra
        return PretrainedCfg(**vals)


_ARCH: Dict[str, PretrainedCfg] = {}  # "arch" -> architecture cfg
_TAGS: Dict[str, PretrainedCfg] = {}  # "arch.tag" -> weights cfg (architecture cfg merged in)


def register_pretrained_cfgs(cfgs: Mapping[str, PretrainedCfg]) -> None:
    """Declare configs: ``"arch"`` keys first (input conventions), then ``"arch.tag"``."""
    for name in sorted(cfgs, key=lambda n: "." in n):
        cfg = cfgs[name]
        arch, _, tag = name.partition(".")
        if not tag:
            _ARCH[arch] = cfg.replace(architecture=arch)
        else:
            base = _ARCH.get(arch, PretrainedCfg())
            own = {f.name: getattr(cfg, f.name) for f in fields(cfg) if getattr(cfg, f.name) != getattr(PretrainedCfg(), f.name)}
            own.pop("extra", None)
            merged = base.replace(**own, **cfg.extra).replace(architecture=arch, tag=tag)
            _TAGS[name] = merged


def register_pretrained(name: str, **kwargs: Any) -> None:
    """Declare weights for ``"arch.tag"`` from keyword fields (user code, plugins)."""
    arch, _, tag = name.partition(".")
    if not tag:
        raise ValueError(f"pretrained names are 'arch.tag', got {name!r}")
    register_pretrained_cfgs({name: PretrainedCfg().replace(**kwargs)})


def get_arch_cfg(arch: str) -> PretrainedCfg:
    """The architecture's own config (a copy); an empty one when none is declared."""
    return copy.deepcopy(_ARCH.get(arch, PretrainedCfg(architecture=arch)))


def pretrained_tags(arch: Optional[str] = None) -> List[str]:
    """``"arch.tag"`` names with weights, in declaration order (the first is the default)."""
    return [n for n in _TAGS if arch is None or n.partition(".")[0] == arch]


def default_tag(arch: str) -> Optional[str]:
    tags = pretrained_tags(arch)
    return tags[0] if tags else None


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """A copy of the config of ``"arch.tag"`` (or of ``"arch"``)."""
    from harmonykit.registry import RegistryError

    arch, _, tag = name.partition(".")
    if not tag:
        return get_arch_cfg(arch)
    if name not in _TAGS:
        tags = pretrained_tags(arch)
        raise RegistryError(f"no weights tag {name!r}; available for {arch!r}: {tags or 'none'}")
    return copy.deepcopy(_TAGS[name])


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (no network, no local file)."""


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, cache_dir=None, strict: bool = True) -> None:
    """Load the weights ``cfg`` points to into ``model`` (strict); sets ``has_trained_weights``."""
    from harmonykit.convert import load_checkpoint, load_weights

    name = cfg.architecture + (f".{cfg.tag}" if cfg.tag else "")
    if cfg.state_dict is not None:
        load_weights(model, cfg.state_dict, strict=strict, source="pretrained_cfg state_dict")
    elif cfg.package_file:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), cfg.package_file)
        if not os.path.isfile(path):
            raise WeightsUnavailableError(f"{name}: the packaged weights file {path} is missing; reinstall harmonykit")
        load_checkpoint(model, path, strict=strict)
    elif cfg.file:
        load_checkpoint(model, cfg.file, strict=strict)
    elif cfg.hf_hub_id:
        from harmonykit.hub import download_weights

        load_checkpoint(model, download_weights(cfg.hf_hub_id, revision=cfg.revision, cache_dir=cache_dir, filename=cfg.hf_hub_filename), strict=strict)
    elif cfg.url:
        import torch.hub

        fname = os.path.basename(cfg.url)
        dst = os.path.join(torch.hub.get_dir(), "checkpoints", "harmonykit", fname)
        if not os.path.isfile(dst):
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
                raise WeightsUnavailableError(_offline_message(name, cfg.url, dst, "HF_HUB_OFFLINE is set"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = dst + ".part"
            try:
                torch.hub.download_url_to_file(cfg.url, tmp, progress=True)
            except Exception as e:  # noqa: BLE001 - urllib raises many kinds; one clear line instead
                if os.path.exists(tmp):
                    os.remove(tmp)
                reason = getattr(e, "reason", None) or e
                raise WeightsUnavailableError(_offline_message(name, cfg.url, dst, str(reason))) from None
            os.replace(tmp, dst)
        load_checkpoint(model, dst, strict=strict)
    else:
        raise RuntimeError(
            f"no pretrained weights are registered for {name!r}; pass checkpoint_path=..., "
            f"pretrained_cfg_overlay={{'file': ...}}, or an hf-hub:/local-dir: name"
        )
    model.has_trained_weights = True


def _offline_message(name: str, url: str, dst: str, reason: str) -> str:
    return (
        f"cannot download the weights of {name!r} from {url} ({reason}); download that file by hand and "
        f"load it with create_model({name.partition('.')[0]!r}, checkpoint_path='FILE') "
        f"(CLI: --checkpoint FILE), or put it at {dst}"
    )
