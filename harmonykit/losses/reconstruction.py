"""Reconstruction losses (paper eq. 2; reference §1.7 / §2.4).

Both official codes train with the foreground-normalised MSE ``MaskWeightedMSE(min_area=100)``
(despite CharmNet's ``*_L1`` option names); plain L1 and MSE are provided for ablations.
All losses take ``pred``, ``target`` ``(B, C, H, W)`` (any value range; the official code works
in ImageNet-normalised space) and ``mask`` ``(B, 1, H, W)`` in [0, 1], and return a scalar.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.registry import LOSSES

__all__ = ["MaskWeightedMSE", "L1Loss", "MSELoss"]

_logger = logging.getLogger(__name__)


@LOSSES.register("fn_mse")
class MaskWeightedMSE(nn.Module):
    """Foreground-normalised MSE: per sample ``sum((pred - target)^2) / (C * max(sum(mask), min_area))``,
    then the batch mean.

    Args:
        min_area: lower bound of the foreground area (pixels) in the denominator; 100 in every
            official config.
    """

    def __init__(self, min_area: float = 100.0) -> None:
        super().__init__()
        if min_area <= 0:
            raise ValueError(f"fn_mse: min_area must be > 0, got {min_area}")
        self.min_area = float(min_area)

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ``(B,)``."""
        sq = (pred - target).pow(2).sum(dim=(1, 2, 3))
        area = mask.sum(dim=(1, 2, 3)).clamp_min(self.min_area)
        return sq / (area * pred.shape[1])

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is None:
            raise ValueError("fn_mse needs the foreground mask")
        return self.per_sample(pred, target, mask).mean()

    def extra_repr(self) -> str:
        return f"min_area={self.min_area:g}"


@LOSSES.register("l1")
class L1Loss(nn.Module):
    """Mean absolute error over every pixel and channel (the mask is ignored)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.l1_loss(pred, target)


@LOSSES.register("mse")
class MSELoss(nn.Module):
    """Mean squared error over every pixel and channel (the mask is ignored)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.mse_loss(pred, target)
