"""Networks: backbones, domain adapters, discriminators, style heads and model entrypoints.

Importing this package registers every built-in model (one module per family).
"""
from harmonykit.models.base import Harmonizer, StageBackbone  # noqa: F401
from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.models._pretrained import PretrainedCfg  # noqa: F401
from harmonykit.models.idih import UNetBackbone
from harmonykit.models.adapters import DomainSplitNet, SharedDomainNet
from harmonykit.models.discriminators import FCDiscriminator
from harmonykit.models.style_heads import StyleClassifier
from harmonykit.models import charmnet  # noqa: F401  (registers the CharmNet entrypoints)
from harmonykit.models import intrinsic_harmony  # noqa: F401  (registers intrinsic_harmony)
from harmonykit.models import rainnet  # noqa: F401  (RainNet, charmnet_rainnet*)
from harmonykit.models import hao_attention  # noqa: F401  (Hao et al. BMVC 2020)
from harmonykit.models import dovenet  # noqa: F401  (DoveNet generator, discriminators, losses)
from harmonykit.models import harmonizer  # noqa: F401  (registers the Harmonizer entrypoint)
from harmonykit.models import ssam  # noqa: F401  (iSSAM / SSAM, charmnet_issam)
from harmonykit.models import pctnet  # noqa: F401  (PCT-Net CNN / ViT)
from harmonykit.models import classical  # noqa: F401  (weight-free baselines: identity, lab_transfer, ...)
from harmonykit.models import lab_statnet  # noqa: F401  (LabStatNet, the shipped default)

__all__ = [
    "Harmonizer",
    "StageBackbone",
    "PretrainedCfg",
    "UNetBackbone",
    "DomainSplitNet",
    "SharedDomainNet",
    "FCDiscriminator",
    "StyleClassifier",
    "HarmonizationOutput",
]
