"""Building blocks of the iDIH family: conv / deconv stages, the blending head, init schemes."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["EncoderStage", "DecoderStage", "BlendingHead", "init_weights", "INIT_SCHEMES"]


class EncoderStage(nn.Module):
    """Conv2d(k=4, s=2) -> [BatchNorm2d] -> ELU: halves H and W.

    Args:
        in_channels, out_channels: channel counts.
        padding: 1 for every stage but the bottleneck (0).
        batchnorm: whether a BatchNorm2d follows the conv.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: int = 1, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=padding, bias=True)
        self.norm = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.act = nn.ELU(alpha=1.0)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DecoderStage(nn.Module):
    """ConvTranspose2d(k=4, s=2) -> BatchNorm2d -> ELU: doubles H and W (pad 0 maps 1 -> 4)."""

    def __init__(self, in_channels: int, out_channels: int, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=padding, bias=True)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ELU(alpha=1.0)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class BlendingHead(nn.Module):
    """Turns the last decoder feature into an image.

    With ``image_fusion`` (iDIH): ``A = sigmoid(3 * conv_attention(F))``, ``R = to_rgb(F)``,
    output ``A * I + (1 - A) * R`` where I is the normalised input composite. Without it (DIH)
    the output is ``R`` and no attention map exists.
    """

    def __init__(self, in_channels: int, image_fusion: bool = True) -> None:
        super().__init__()
        self.image_fusion = image_fusion
        self.conv_attention = nn.Conv2d(in_channels, 1, kernel_size=1) if image_fusion else None
        self.to_rgb = nn.Conv2d(in_channels, 3, kernel_size=1)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """features ``(B, C, H, W)``, image ``(B, 3, H, W)`` normalised -> (output, attention)."""
        rgb = self.to_rgb(features)
        if self.conv_attention is None:
            return rgb, None
        attention = torch.sigmoid(3.0 * self.conv_attention(features))
        return attention * image + (1.0 - attention) * rgb, attention


def _xavier_gluon(module: nn.Module) -> None:
    """Samsung iDIH init: gaussian Xavier, magnitude 2, factor 'avg'; biases 0, BN (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            std = math.sqrt(2.0 / ((fan_in + fan_out) / 2.0))
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _normal(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix / CharmNet init: weights N(0, 0.02), biases 0, BN weight N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


INIT_SCHEMES = {"xavier_gluon": _xavier_gluon, "normal": _normal, "torch": lambda m: None}


def init_weights(module: nn.Module, scheme: str = "xavier_gluon") -> None:
    """Initialise ``module`` in place with a named scheme (``INIT_SCHEMES``)."""
    try:
        fn = INIT_SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {sorted(INIT_SCHEMES)}") from None
    fn(module)
