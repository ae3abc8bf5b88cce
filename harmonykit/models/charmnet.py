"""CharmNet entrypoints (Cao, Cong, Niu, BMVC 2022): a backbone + the ``split`` adapter.

| name | what | params |
|---|---|---|
| ``charmnet_idih`` | CharmNet generator: iDIH-256 split at k=4, domains rendered/real | 9,257,544 |
| ``charmnet_idih_split{1..6}`` | the same split after k stages | |
| ``charmnet_idih_shared`` | one iDIH for both domains (fusion / two-stage), f/g at k=4 | 8,301,284 |

``create_model("charmnet_idih", ch=8, max_channels=64)`` is the reduced-width network of the
parity fixtures. Other backbones that implement the stage protocol get ``charmnet_<name>``
entries in their own files (``make_charmnet_entrypoints``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch.nn as nn

from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import CHARMNET_DOMAINS
from harmonykit.models.idih import _IDIH

__all__ = ["charmnet_idih", "charmnet_idih_shared", "make_charmnet_entrypoints"]

PAPER = dict(paper_ids="arXiv:2103.17104", paper_name="Deep Image Harmonization by Bridging the Reality Gap")
CHARMNET_ARGS = dict(adapter="split", split_depth=4, domains=CHARMNET_DOMAINS)


def make_charmnet_entrypoints(
    backbone_name: str,
    backbone_args: Dict[str, Any],
    tiny_args: Dict[str, Any],
    splits: range = range(0),
    cfg: Optional[PretrainedCfg] = None,
    split_depth: int = 4,
) -> Dict[str, Any]:
    """Register ``charmnet_<backbone_name>`` (split at ``split_depth``), ``..._shared`` and
    ``..._split{k}`` for ``k`` in ``splits``; returns the entrypoints by name."""
    base = dict(backbone_args, **dict(CHARMNET_ARGS, split_depth=split_depth))
    cfg = (cfg or PretrainedCfg()).replace(**PAPER, tiny_args=tiny_args)
    variants = {f"charmnet_{backbone_name}": (base, "CharmNet generator on {b}, split depth k={k}.")}
    variants[f"charmnet_{backbone_name}_shared"] = (
        dict(base, adapter="shared"),
        "One {b} shared by both domains (dataset fusion / two-stage baselines), f/g at k={k}.",
    )
    for k in splits:
        variants[f"charmnet_{backbone_name}_split{k}"] = (dict(base, split_depth=k), "CharmNet on {b} split after k={k} stages.")
    out = {}
    for name, (defaults, doc) in variants.items():
        register_pretrained_cfgs({name: cfg})

        def entry(pretrained: bool = False, _name: str = name, _defaults: Dict[str, Any] = defaults, **kwargs: Any) -> nn.Module:
            return build_model(_name, _defaults, kwargs)

        entry.__name__ = entry.__qualname__ = name
        entry.__doc__ = doc.format(b=backbone_name, k=defaults["split_depth"])
        out[name] = register_model(entry)
    return out


_CHARMNET_IDIH = dict(_IDIH, init="normal")
_ENTRIES = make_charmnet_entrypoints("idih", _CHARMNET_IDIH, dict(ch=8, max_channels=16), splits=range(1, 7))
charmnet_idih = _ENTRIES["charmnet_idih"]
charmnet_idih_shared = _ENTRIES["charmnet_idih_shared"]
for _name, _fn in _ENTRIES.items():
    globals()[_name] = _fn
    if _name not in __all__:
        __all__.append(_name)
