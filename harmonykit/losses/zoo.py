"""Training losses of the full-resolution zoo models (official objectives).

- ``harmonizer_pixel``: Harmonizer's (Ke et al., ECCV 2022; ``src/train/harmonizer/criterion.py``)
  per-image term ``sum(mask * sqrt((p - t)^2 + 1e-6)) / (sum(mask) + 1e-6)
  + 10 * sum(mask * (p - t)^2) / (sum(mask) + 1e-6)`` (sums over channels and pixels, the mask
  counted once per pixel), batch mean.
- ``pctnet_smoothness``: PCT-Net's (Guerreiro et al., CVPR 2023; ``iharm/model/losses.py``
  ``ParamSmoothness``) ``mean(kornia.filters.sobel(params))`` of the per-pixel colour-transform
  parameters (``output.extras["transform"]``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from harmonykit.registry import LOSSES

__all__ = ["HarmonizerPixelLoss", "PCTNetSmoothness"]


@LOSSES.register("harmonizer_pixel")
class HarmonizerPixelLoss(nn.Module):
    """Masked Charbonnier L1 + ``l2_weight`` x masked MSE (official ``HarmonizerLoss`` of one image).

    ``forward(pred, target, mask)``: ``(B, 3, H, W)`` images, ``(B, 1, H, W)`` mask in [0, 1]."""

    def __init__(self, epsilon: float = 1e-6, l2_weight: float = 10.0) -> None:
        super().__init__()
        self.epsilon, self.l2_weight = float(epsilon), float(l2_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is None:
            raise ValueError("harmonizer_pixel needs the foreground mask")
        d2 = (pred - target).pow(2)
        area = mask.sum(dim=(1, 2, 3)) + 1e-6
        l1 = (torch.sqrt(d2 + self.epsilon) * mask).sum(dim=(1, 2, 3)) / area
        l2 = (d2 * mask).sum(dim=(1, 2, 3)) / area * self.l2_weight
        return (l1 + l2).mean()

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon:g}, l2_weight={self.l2_weight:g}"


@LOSSES.register("pctnet_smoothness")
class PCTNetSmoothness(nn.Module):
    """``mean(sobel(params))`` of a PCT-Net output's ``extras["transform"]`` ``(B, P, h, w)``.

    ``forward(output, real)``: ``real`` is ignored (the ``output_<domain>`` loss slot's signature)."""

    def forward(self, output: Any, real: Optional[torch.Tensor] = None) -> torch.Tensor:
        import kornia

        extras = getattr(output, "extras", None) or {}
        if "transform" not in extras:
            raise ValueError("pctnet_smoothness: the model output has no extras['transform']; use a pctnet model")
        return kornia.filters.sobel(extras["transform"]).mean()
