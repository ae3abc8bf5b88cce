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
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

from harmonykit.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "PretrainedCfg",
    "register_pretrained_cfgs",
    "register_pretrained",
    "get_pretrained_cfg",
    "get_arch_cfg",
    "pretrained_tags",
    "default_tag",
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


def cfg_as_dict(cfg: PretrainedCfg) -> Dict[str, Any]:
    return asdict(cfg)
