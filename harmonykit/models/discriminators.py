"""Domain discriminators (CharmNet paper eq. 1, official ``FCDiscriminator``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from harmonykit.models.layers import init_weights
from harmonykit.registry import DISCRIMINATORS

__all__ = ["FCDiscriminator"]


@DISCRIMINATORS.register("fc")
class FCDiscriminator(nn.Module):
    """Three 3x3 convs with LeakyReLU(0.2): ``(B, C, h, w)`` features -> ``(B, 1, h, w)`` scores.

    Args:
        in_channels: C, the channels of ``f`` at the split point (128 for CharmNet k=4).
        width: channels of the first conv (official ``ndf`` = 64); the second has width // 2.
        init: weight init scheme (``"normal"``: N(0, 0.02), as the official code).

    Parameter names follow the official layout (``net.0``, ``net.2``, ``net.4``).
    """

    def __init__(self, in_channels: int = 128, width: int = 64, init: str = "normal") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, 1, 3, padding=1),
        )
        init_weights(self, init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
