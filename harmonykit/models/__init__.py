"""Networks: backbones, domain adapters, discriminators, style heads and model entrypoints."""
from harmonykit.models.adapters import DomainSplitNet, SharedDomainNet
from harmonykit.models.discriminators import FCDiscriminator
from harmonykit.models.idih import UNetBackbone
from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.models.style_heads import StyleClassifier
from harmonykit.models import zoo  # noqa: F401  (registers the entrypoints)

__all__ = [
    "UNetBackbone",
    "DomainSplitNet",
    "SharedDomainNet",
    "FCDiscriminator",
    "StyleClassifier",
    "HarmonizationOutput",
]
