"""Training objective of Intrinsic Image Harmonization (Guo et al., CVPR 2021; official v1.0
``retinexltifpmModel.backward_G``), on the [0, 1] scale of the network's outputs.

Terms (official names and weights)::

    G_L1        = 100 * L1(harmonized, real)
    G_R_grident =  10 * IntrinsicGradientLoss(reflectance, real)
    G_I_L2      =   1 * MSE(illumination, real)
    G_I_smooth  =  10 * IntrinsicSmoothLoss(illumination)
    IF          = 100 * IntrinsicIFMLoss(ifm_mean, real)
    G           = sum of the above

:class:`IntrinsicHarmonyLoss` (``"intrinsic_harmony"``) computes them from a model output and the
target; the three specific terms are registered on their own too.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.registry import LOSSES

__all__ = [
    "IntrinsicGradientLoss",
    "IntrinsicSmoothLoss",
    "IntrinsicIFMLoss",
    "IntrinsicHarmonyLoss",
    "channel_sum_gradient",
    "dssim_contrast_structure",
    "rgb_to_gray",
]

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def channel_sum_gradient(x: torch.Tensor, direction: str) -> torch.Tensor:
    """``|d/dx sum_c x|`` (or d/dy) as backward differences with a zero border:
    ``(B, C, H, W) -> (B, 1, H, W)``; ``out[..., i, j] = |S[i, j] - S[i, j-1]|`` with ``S[i, -1] = 0``."""
    if direction not in ("x", "y"):
        raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
    s = x.sum(dim=1, keepdim=True)
    if direction == "x":
        prev = F.pad(s, (1, 0, 0, 0))[..., :, :-1]
    else:
        prev = F.pad(s, (0, 0, 1, 0))[..., :-1, :]
    return (s - prev).abs()


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` with the weights 0.2989, 0.5870, 0.1140."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.tensordot(x, w, dims=([-3], [-1])).unsqueeze(-3)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    g = torch.tensor([math.exp(-((i - size // 2) ** 2) / float(2 * sigma**2)) for i in range(size)])
    g = (g / g.sum()).unsqueeze(1)
    w2 = (g @ g.t()).float()
    return w2.expand(channels, 1, size, size).contiguous().to(dtype=like.dtype, device=like.device)


def dssim_contrast_structure(a: torch.Tensor, b: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """``(1 - mean(cs)) / 2`` with SSIM's contrast-structure map
    ``cs = (2 sigma_ab + C2) / (sigma_a^2 + sigma_b^2 + C2)``, ``C2 = 0.03^2``, Gaussian window
    (zero padding, per channel). ``a``, ``b``: ``(B, C, H, W)``; returns a scalar in [0, 1]."""
    c = a.shape[1]
    win = _gaussian_window(window_size, sigma, c, a)
    pad = window_size // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, padding=pad, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a.pow(2)
    var_b = blur(b * b) - mu_b.pow(2)
    cov = blur(a * b) - mu_a * mu_b
    c2 = 0.03**2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return (1 - cs.mean()) / 2


@LOSSES.register("intrinsic_gradient")
class IntrinsicGradientLoss(nn.Module):
    """Reflectance gradient loss: ``L1(|dx pred|, |dx target|) + L1(|dy pred|, |dy target|)`` on
    channel-summed backward differences (:func:`channel_sum_gradient`). ``(B, C, H, W)`` inputs."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return sum(F.l1_loss(channel_sum_gradient(pred, d), channel_sum_gradient(target, d)) for d in ("x", "y"))


@LOSSES.register("intrinsic_smooth")
class IntrinsicSmoothLoss(nn.Module):
    """Illumination smoothness: the mean absolute second differences ``dxx + dxy + dyx + dyy`` of
    ``pred`` ``(B, C, H, W)`` (``target`` and ``mask`` are ignored)."""

    @staticmethod
    def _diffs(t: torch.Tensor):
        return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]

    def forward(self, pred: torch.Tensor, target: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        dx, dy = self._diffs(pred)
        dxx, dxy = self._diffs(dx)
        dyx, dyy = self._diffs(dy)
        return dxx.abs().mean() + dxy.abs().mean() + dyx.abs().mean() + dyy.abs().mean()


@LOSSES.register("intrinsic_ifm")
class IntrinsicIFMLoss(nn.Module):
    """Inharmony-free feature loss: DSSIM (contrast-structure) between ``ifm_mean``
    ``(B, 1, h, w)`` and the grey target ``(B, 3, H, W)`` in [0, 1], resized (nearest) to ``h x w``."""

    def __init__(self, window_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.window_size, self.sigma = window_size, sigma

    def forward(self, ifm_mean: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        gray = rgb_to_gray(F.interpolate(target, size=list(ifm_mean.shape[-2:])))
        return dssim_contrast_structure(ifm_mean, gray, self.window_size, self.sigma)


@LOSSES.register("intrinsic_harmony")
class IntrinsicHarmonyLoss(nn.Module):
    """The official objective (weights as ``retinexltifpm``'s defaults).

    ``forward(output, real)``: ``output`` a :class:`~harmonykit.models.outputs.HarmonizationOutput`
    of ``intrinsic_harmony`` (``image`` and ``extras['reflectance' | 'illumination' |
    'ifm_mean']``), ``real`` ``(B, 3, H, W)`` in [0, 1]; returns the total ``G``.
    :meth:`terms` returns every weighted term by its official name, and ``G``.
    """

    def __init__(
        self,
        lambda_L1: float = 100.0,
        lambda_R_gradient: float = 10.0,
        lambda_I_L2: float = 1.0,
        lambda_I_smooth: float = 10.0,
        lambda_ifm: float = 100.0,
    ) -> None:
        super().__init__()
        self.lambdas = dict(
            lambda_L1=lambda_L1, lambda_R_gradient=lambda_R_gradient, lambda_I_L2=lambda_I_L2,
            lambda_I_smooth=lambda_I_smooth, lambda_ifm=lambda_ifm,
        )
        self.gradient = IntrinsicGradientLoss()
        self.smooth = IntrinsicSmoothLoss()
        self.ifm = IntrinsicIFMLoss()

    def terms(self, output: Any, real: torch.Tensor) -> Dict[str, torch.Tensor]:
        extras = getattr(output, "extras", None) or {}
        missing = [k for k in ("reflectance", "illumination", "ifm_mean") if k not in extras]
        if missing:
            raise ValueError(f"intrinsic_harmony loss: the model output has no extras {missing}; use an intrinsic_harmony model")
        lam = self.lambdas
        out = {
            "G_L1": F.l1_loss(output.image, real) * lam["lambda_L1"],
            "G_R_grident": self.gradient(extras["reflectance"], real) * lam["lambda_R_gradient"],
            "G_I_L2": F.mse_loss(extras["illumination"], real) * lam["lambda_I_L2"],
            "G_I_smooth": self.smooth(extras["illumination"]) * lam["lambda_I_smooth"],
            "IF": self.ifm(extras["ifm_mean"], real) * lam["lambda_ifm"],
        }
        out["G"] = out["G_L1"] + out["G_R_grident"] + out["G_I_L2"] + out["G_I_smooth"] + out["IF"]
        return out

    def forward(self, output: Any, real: torch.Tensor) -> torch.Tensor:
        return self.terms(output, real)["G"]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.lambdas.items())
