"""Registered loss terms (``harmonykit.registry.LOSSES``): reconstruction, adversarial, style."""
from .adversarial import HingeDiscriminatorLoss, HingeGeneratorLoss
from .reconstruction import L1Loss, MaskWeightedMSE, MSELoss
from .style import EntropyReduction, HardCrossEntropy, SoftCrossEntropy, StyleConsistency, mean_entropy
from . import dovenet, intrinsic, zoo  # noqa: F401  (DoveNet; Guo et al. CVPR 2021; Harmonizer, PCT-Net)

__all__ = [
    "MaskWeightedMSE",
    "L1Loss",
    "MSELoss",
    "HingeDiscriminatorLoss",
    "HingeGeneratorLoss",
    "SoftCrossEntropy",
    "HardCrossEntropy",
    "StyleConsistency",
    "EntropyReduction",
    "mean_entropy",
]
