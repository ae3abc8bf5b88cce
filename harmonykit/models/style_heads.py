"""Style classifiers P_in / P_out (CharmNet paper §4.2, official ``StyleClassifier``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from harmonykit.models.layers import init_weights
from harmonykit.registry import STYLE_HEADS

__all__ = ["StyleClassifier", "POOLING_MODES"]

POOLING_MODES = ("official", "global")


@STYLE_HEADS.register("style_classifier")
class StyleClassifier(nn.Module):
    """Conv-BN-ReLU x3 with max pooling, then a 3x3 conv to ``num_styles`` logits.

    Input: features ``(B, C, h, w)``. Output: **logits** ``(B, K)`` (apply softmax for the
    official probabilities).

    Args:
        in_channels: C (128 for CharmNet k=4).
        width: channels of the first conv (official 64); then width // 2, width // 4.
        num_styles: K = 10 lighting styles.
        pool: ``"official"`` reproduces the official MaxPool(4) + squeeze. It gives ``(B, K)``
            only when the features are 16-31 px wide (256-px inputs at k=4) and then reads only
            the top-left window; on larger inputs it returns ``(B, K, h', w')`` as the official
            code does. ``"global"`` replaces it by a global max pool over whatever is left:
            identical at 16 px, size-independent elsewhere (use it for other resolutions).
        init: weight init scheme (official ``"normal"``).

    Parameter names follow the official layout (``net.0`` ... ``net.12``).
    """

    def __init__(
        self, in_channels: int = 128, width: int = 64, num_styles: int = 10, pool: str = "official", init: str = "normal"
    ) -> None:
        super().__init__()
        if pool not in POOLING_MODES:
            raise ValueError(f"pool must be one of {POOLING_MODES}, got {pool!r}")
        self.pool, self.num_styles = pool, num_styles
        w1, w2, w3 = width, width // 2, width // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, padding=1),
            nn.BatchNorm2d(w1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w1, w2, 3, padding=1),
            nn.BatchNorm2d(w2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1),
            nn.BatchNorm2d(w3),
            nn.ReLU(),
            nn.MaxPool2d(4) if pool == "official" else nn.AdaptiveMaxPool2d(1),
            nn.Conv2d(w3, num_styles, 3, padding=1),
        )
        init_weights(self, init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.net(features)
        if logits.shape[-2:] == (1, 1):
            return logits.flatten(1)
        return logits
