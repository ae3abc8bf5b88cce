"""ImageNet normalisation used by every official harmonization network.

Convention: images are RGB float tensors in [0, 1]; the normalised space is
``(x - mean) / std`` per channel (representable range about [-2.118, 2.640]).
"""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize", "denormalize"]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def _stats(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> ImageNet-normalised ``(B, 3, H, W)``."""
    mean, std = _stats(x)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised ``(B, 3, H, W)`` -> ``x * std + mean`` (not clamped)."""
    mean, std = _stats(x)
    return x * std + mean
