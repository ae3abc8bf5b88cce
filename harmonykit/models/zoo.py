"""Registered model entrypoints: iDIH baselines and CharmNet variants.

Each entrypoint is ``fn(pretrained=False, **kwargs) -> nn.Module``; user kwargs override the
defaults (``create_model("charmnet_idih", ch=8, max_channels=64)`` is the reduced-width
network of the parity fixtures). Weights are loaded by :func:`harmonykit.create_model`.

| name | what | params |
|---|---|---|
| ``idih256`` | Samsung ``improved_dih256``: depth 7, BN from stage 2, blending | 8,301,284 |
| ``dih256`` | DIH: BN everywhere, no blending | 8,301,507 |
| ``idih512`` | ``improved_dih512``: depth 8 | 16,692,964 |
| ``charmnet_idih`` | CharmNet generator: iDIH-256 split at k=4, domains rendered/real | 9,257,544 |
| ``charmnet_idih_split{1..6}`` | the same split after k stages | |
| ``charmnet_idih_shared`` | one iDIH for both domains (fusion / two-stage), f/g at k=4 | 8,301,284 |
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from harmonykit.models._builder import build_model
from harmonykit.registry import MODELS

__all__ = ["idih256", "dih256", "idih512", "charmnet_idih", "charmnet_idih_shared"]

_IDIH = dict(backbone="idih", depth=7, ch=64, max_channels=512, batchnorm_from=2, image_fusion=True, init="xavier_gluon")
_CHARMNET = dict(_IDIH, adapter="split", split_depth=4, domains=("rendered", "real"), init="normal")

_PAPER_IDIH = dict(paper_ids="arXiv:2006.00809", paper_name="Foreground-aware Semantic Representations for Image Harmonization")
_PAPER_CHARMNET = dict(paper_ids="arXiv:2103.17104", paper_name="Deep Image Harmonization by Bridging the Reality Gap")


@MODELS.register
def idih256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iDIH-256 (Samsung ``improved_dih256``)."""
    return build_model("idih256", _IDIH, kwargs, _PAPER_IDIH)


@MODELS.register
def dih256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DIH-256: BatchNorm in every encoder stage, no blending layer."""
    return build_model("dih256", dict(_IDIH, batchnorm_from=0, image_fusion=False), kwargs, _PAPER_IDIH)


@MODELS.register
def idih512(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iDIH-512 (Samsung ``improved_dih512``): depth 8, inputs multiples of 256, >= 512."""
    return build_model("idih512", dict(_IDIH, depth=8), kwargs, _PAPER_IDIH)


@MODELS.register
def charmnet_idih(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CharmNet generator on iDIH-256, split depth k=4 (the paper's model)."""
    return build_model("charmnet_idih", _CHARMNET, kwargs, _PAPER_CHARMNET)


@MODELS.register
def charmnet_idih_shared(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """One iDIH-256 shared by both domains (dataset fusion / two-stage baselines)."""
    return build_model("charmnet_idih_shared", dict(_CHARMNET, adapter="shared"), kwargs, _PAPER_CHARMNET)


def _make_split(k: int):
    name = f"charmnet_idih_split{k}"

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return build_model(name, dict(_CHARMNET, split_depth=k), kwargs, _PAPER_CHARMNET)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"CharmNet generator on iDIH-256 split after {k} encoder stages (ablation)."
    return entry


for _k in range(1, 7):
    globals()[f"charmnet_idih_split{_k}"] = MODELS.register(_make_split(_k))
    __all__.append(f"charmnet_idih_split{_k}")
