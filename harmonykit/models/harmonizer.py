"""Harmonizer (Ke, Sun, Li, Yan, Lau, "Harmonizer: Learning to Perform White-Box Image and
Video Harmonization", ECCV 2022), numerically equal to the official ``ZHKKKe/Harmonizer``.

The network never paints pixels: an EfficientNet-B0 encoder looks at a low-resolution view of
the composite (256x256 by default, made with a bilinear resize), a cascade regressor predicts
one argument in [-1, 1] per white-box filter, and six differentiable filters (temperature,
brightness, contrast, saturation, highlight, shadow) are applied in that order to the
full-resolution composite. After each filter the foreground is pasted on the original
background with the mask.

Components:

- :class:`DualStemEfficientNet`: two half-width stems (composite + mask, composite + inverted
  mask) whose outputs are concatenated, then the EfficientNet-B0 blocks and head conv, built
  with ``timm`` (TF "same" padding, BN eps 1e-3, momentum 0.01, as the official port);
- :class:`CascadeArgumentRegressor`: global pool, two projections, one small head per filter,
  each head updating a running state;
- the filters (:class:`TemperatureFilter` ... :class:`ShadowFilter`), no parameters;
- :class:`FilterHarmonizer`: the registered model ``harmonizer``, with the official API
  :meth:`~FilterHarmonizer.predict_arguments` / :meth:`~FilterHarmonizer.restore_image`.

Official checkpoints (``harmonizer.pth``) load through :func:`checkpoint_filter_fn`.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, create_conv2d
from timm.models.efficientnet import EfficientNet, decode_arch_def, round_channels

from harmonykit.convert import CheckpointLayout, register_layout
from harmonykit.models._builder import finalize_model, pop_pretrained_opts, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import Harmonizer, check_inputs
from harmonykit.models.outputs import HarmonizationOutput

__all__ = [
    "FilterHarmonizer",
    "DualStemEfficientNet",
    "CascadeArgumentRegressor",
    "TemperatureFilter",
    "BrightnessFilter",
    "ContrastFilter",
    "SaturationFilter",
    "HighlightFilter",
    "ShadowFilter",
    "FILTER_TYPES",
    "FilterPlan",
    "checkpoint_filter_fn",
    "harmonizer",
]

# EfficientNet-B0 stages (timm's arch-def strings: block type, repeats, kernel, stride, expansion,
# output channels, squeeze-excitation ratio)
EFFICIENTNET_B0_ARCH = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
STAGE_REPEATS = [1, 2, 2, 3, 3, 4, 1]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's 0.99 decay, as the official PyTorch port


# --------------------------------------------------------------------------------------------
# encoder
# --------------------------------------------------------------------------------------------
class DualStemEfficientNet(nn.Module):
    """EfficientNet-B0 features of a composite seen twice: with the mask and with its inverse.

    ``conv_fg``/``bn_fg`` read ``cat(composite, mask)``, ``conv_bg``/``bn_bg`` read
    ``cat(composite, 1 - mask)`` (3x3, stride 2, half the B0 stem width each); their outputs are
    concatenated and run through timm's B0 ``blocks``, ``conv_head`` and ``bn2`` (BN + SiLU).

    Args:
        width_coefficient: channel multiplier (1.0 = B0; the official name).
        drop_path_rate: stochastic depth of the blocks, ``rate * i / 16`` for block ``i``
            (the official ``drop_connect_rate``, 0.2 for B0); active in train mode only.
    """

    def __init__(self, width_coefficient: float = 1.0, drop_path_rate: float = 0.2) -> None:
        super().__init__()
        round_chs = partial(round_channels, multiplier=width_coefficient, divisor=8)
        norm_layer = partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM)
        net = EfficientNet(
            block_args=decode_arch_def(EFFICIENTNET_B0_ARCH, 1.0),
            num_features=round_chs(1280),
            stem_size=32,
            round_chs_fn=round_chs,
            act_layer=nn.SiLU,
            norm_layer=norm_layer,
            pad_type="same",
            drop_path_rate=drop_path_rate,
            num_classes=0,
            global_pool="",
        )
        stem = round_chs(32) // 2
        self.conv_fg = create_conv2d(4, stem, 3, stride=2, padding="same")
        self.bn_fg = BatchNormAct2d(stem, eps=BN_EPS, momentum=BN_MOMENTUM, act_layer=nn.SiLU)
        self.conv_bg = create_conv2d(4, stem, 3, stride=2, padding="same")
        self.bn_bg = BatchNormAct2d(stem, eps=BN_EPS, momentum=BN_MOMENTUM, act_layer=nn.SiLU)
        self.blocks = net.blocks
        for stage in self.blocks:
            # the official port (lukemelas' EfficientNet-PyTorch) stores the first block's stride as
            # a list, so its `stride == 1` test fails and a stage's first block never adds its input;
            # this only matters when that block keeps the channel count (narrow widths)
            stage[0].has_skip = False
        self.conv_head = net.conv_head
        self.bn2 = net.bn2
        self.num_features = int(net.num_features)
        for m in (self.conv_fg, self.conv_bg):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
        """``fg``, ``bg``: ``(B, 4, h, w)`` -> features ``(B, num_features, h/32, w/32)``."""
        x = torch.cat((self.bn_fg(self.conv_fg(fg)), self.bn_bg(self.conv_bg(bg))), dim=1)
        x = self.blocks(x)
        return self.bn2(self.conv_head(x))


# --------------------------------------------------------------------------------------------
# argument regressor
# --------------------------------------------------------------------------------------------
class ArgumentHead(nn.Module):
    """One filter's head: ``state = fc_state(cat(f, state))``, ``argument = fc_out(state)``."""

    def __init__(self, f_channels: int, base_channels: int) -> None:
        super().__init__()
        self.fc_state = nn.Linear(f_channels + base_channels, base_channels)
        self.fc_out = nn.Linear(base_channels, 1)


class CascadeArgumentRegressor(nn.Module):
    """Pooled features -> one argument per filter, each head refining a running state.

    ``x = avgpool(features)``; ``f = proj_f(x)`` (160 channels, fixed as in the official
    code), ``g = proj_g(x)`` (``base_channels``); for head ``i``:
    ``g = fc_state_i(cat(f, g))``, ``argument_i = fc_out_i(g)``. No non-linearity.

    Returns ``(B, num_heads)``, unbounded (the filters clamp to [-1, 1]).
    """

    F_CHANNELS = 160

    def __init__(self, in_channels: int, base_channels: int = 160, num_heads: int = 6) -> None:
        super().__init__()
        self.proj_f = nn.Linear(in_channels, self.F_CHANNELS)
        self.proj_g = nn.Linear(in_channels, base_channels)
        self.heads = nn.ModuleList(ArgumentHead(self.F_CHANNELS, base_channels) for _ in range(num_heads))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.mean(dim=(2, 3))
        f, g = self.proj_f(x), self.proj_g(x)
        args = []
        for head in self.heads:
            g = head.fc_state(torch.cat((f, g), dim=1))
            args.append(head.fc_out(g))
        return torch.cat(args, dim=1)


# --------------------------------------------------------------------------------------------
# white-box filters: image (B, 3, H, W) in [0, 1], argument x (B, 1, 1, 1) in [-1, 1]
# --------------------------------------------------------------------------------------------
class TemperatureFilter(nn.Module):
    """Colour temperature: grey-world correction re-targeted by ``x`` (x > 0: bluer, x < 0:
    redder; G always moves by x/2)."""

    eps = 1e-6

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        mr, mg, mb = (c.mean(dim=(2, 3), keepdim=True) for c in (r, g, b))
        gray = (mr + mg + mb) / 3
        ar, ag, ab = 1 - gray / (mr + self.eps), 1 - gray / (mg + self.eps), 1 - gray / (mb + self.eps)
        xd = x.detach()
        pos, neg, zero = (xd > 0).float(), (xd < 0).float(), (xd == 0).float()
        shift = x * torch.sign(x)
        mr2, mg2, mb2 = mr + shift * neg, mg + shift * 0.5 * (1 - zero), mb + shift * pos
        gray2 = (mr2 + mg2 + mb2) / 3
        out = torch.cat(
            (
                (gray2 / (mr2 + self.eps) + ar) * r,
                (gray2 / (mg2 + self.eps) + ag) * g,
                (gray2 / (mb2 + self.eps) + ab) * b,
            ),
            dim=1,
        )
        return out.clamp(0.0, 1.0)


class BrightnessFilter(nn.Module):
    """Brightness: the HSV value channel scaled by ``1 / (1 - x)`` (x >= 0) or ``1 + x``."""

    eps = 1e-6

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hsv = kornia.color.rgb_to_hsv(image)
        pos = (x >= 0).float()
        alpha = (1 / ((1 - x) + self.eps)) * pos + (x + 1) * (1 - pos)
        hsv = torch.cat((hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3] * alpha), dim=1)
        return kornia.color.hsv_to_rgb(hsv).clamp(0.0, 1.0)


class ContrastFilter(nn.Module):
    """Contrast around the image mean: ``image + (image - mean) * k`` with ``k = x`` (x <= 0)
    or ``255 / (256 - floor(255 x)) - 1`` (x > 0)."""

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        threshold = image.mean(dim=(1, 2, 3), keepdim=True)
        pos = (x.detach() > 0).float()
        k = 255 / (256 - torch.floor(x * 255)) - 1
        k = x * (1 - pos) + k * pos
        return (image + (image - threshold) * k).clamp(0.0, 1.0)


class SaturationFilter(nn.Module):
    """Saturation (HSL): x >= 0 pushes colours away from their lightness, x < 0 towards it."""

    eps = 1e-6

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        cmin = image.min(dim=1, keepdim=True)[0]
        cmax = image.max(dim=1, keepdim=True)[0]
        var, ran = cmax - cmin, cmax + cmin
        mean = ran / 2
        pos = (x.detach() >= 0).float()
        dark = (mean < 0.5).float()
        s = (var / (ran + self.eps)) * dark + (var / (2 - ran + self.eps)) * (1 - dark)
        big = ((x + s) > 1).float()
        a_pos = s * big + (1 - x) * (1 - big)
        a_pos = 1 / (a_pos + self.eps) - 1
        a_neg = 1 + x
        a = a_pos * pos + a_neg * (1 - pos)
        out = image * pos + mean * (1 - pos) + (image - mean) * a
        return out.clamp(0.0, 1.0)


class HighlightFilter(nn.Module):
    """Highlights: ``1 - (1 - image) ** (1 + x)``."""

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        inv = 1.0 - image
        inv = torch.pow(inv + 1e-9, x + 1).clamp(0.0, 1.0)
        return (1.0 - inv).clamp(0.0, 1.0)


class ShadowFilter(nn.Module):
    """Shadows: ``image ** (1 - x)``."""

    def forward(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(image + 1e-9, 1 - x).clamp(0.0, 1.0)


FILTER_TYPES: Dict[str, type] = {
    "temperature": TemperatureFilter,
    "brightness": BrightnessFilter,
    "contrast": ContrastFilter,
    "saturation": SaturationFilter,
    "highlight": HighlightFilter,
    "shadow": ShadowFilter,
}
"""The filters by name, in the order the official Harmonizer applies them."""


# --------------------------------------------------------------------------------------------
# the six filters fused, in bands of rows (full-resolution inference)
# --------------------------------------------------------------------------------------------
def temperature_gains(means: torch.Tensor, x: torch.Tensor, eps: float = TemperatureFilter.eps) -> torch.Tensor:
    """Per-channel gains of :class:`TemperatureFilter` (the filter is ``clamp(gain_c * image_c)``).

    ``means (B, 3, 1, 1)``: channel means of the image; ``x (B, 1, 1, 1)`` in [-1, 1].
    Returns ``(B, 3, 1, 1)`` (the official arithmetic, scalar by scalar)."""
    mr, mg, mb = means[:, 0:1], means[:, 1:2], means[:, 2:3]
    gray = (mr + mg + mb) / 3
    ar, ag, ab = 1 - gray / (mr + eps), 1 - gray / (mg + eps), 1 - gray / (mb + eps)
    pos, neg, zero = (x > 0).float(), (x < 0).float(), (x == 0).float()
    shift = x * torch.sign(x)
    mr2, mg2, mb2 = mr + shift * neg, mg + shift * 0.5 * (1 - zero), mb + shift * pos
    gray2 = (mr2 + mg2 + mb2) / 3
    return torch.cat((gray2 / (mr2 + eps) + ar, gray2 / (mg2 + eps) + ag, gray2 / (mb2 + eps) + ab), dim=1)


def brightness_gain(x: torch.Tensor, eps: float = BrightnessFilter.eps) -> torch.Tensor:
    """:class:`BrightnessFilter` scales the HSV value, i.e. every channel: ``clamp(gain * image)``
    (equal to the HSV round trip up to ``gain x 1e-8``, see :data:`FUSED_BRIGHTNESS_MAX_GAIN`).
    ``x (B, 1, 1, 1)`` -> ``(B, 1, 1, 1)``."""
    pos = (x >= 0).float()
    return (1 / ((1 - x) + eps)) * pos + (x + 1) * (1 - pos)


def contrast_gain(x: torch.Tensor) -> torch.Tensor:
    """:class:`ContrastFilter`'s ``k`` in ``image + (image - mean) * k``; ``(B, 1, 1, 1)``."""
    pos = (x > 0).float()
    k = 255 / (256 - torch.floor(x * 255)) - 1
    return x * (1 - pos) + k * pos


FUSED_BRIGHTNESS_MAX_GAIN = 100.0
"""Above this brightness gain (argument > 0.99) the HSV round trip is run as the official filter
does: kornia's ``rgb_to_hsv`` divides by ``v + 1e-8``, so the round trip equals a plain scaling
only up to ``gain x 1e-8`` (1e-6 at gain 100, but 1e-2 at the gain 1e6 of argument 1)."""


def _brightness_(image: torch.Tensor, alpha: Union[float, torch.Tensor], exact: bool) -> torch.Tensor:
    """:class:`BrightnessFilter` on a float band ``(B, 3, h, w)`` (in place when not ``exact``):
    a plain scaling, or with ``exact`` the official HSV round trip."""
    if not exact:
        return image.mul_(alpha).clamp_(0.0, 1.0)
    hsv = kornia.color.rgb_to_hsv(image)
    return kornia.color.hsv_to_rgb(torch.cat((hsv[:, 0:2], hsv[:, 2:3] * alpha), dim=1)).clamp_(0.0, 1.0)


def _temperature_brightness_(image: torch.Tensor, gains: torch.Tensor, alpha: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """The first two filters on a float band ``(B, 3, h, w)`` (in place unless ``exact``)."""
    return _brightness_(image.mul_(gains).clamp_(0.0, 1.0), alpha, exact)


class FilterPlan:
    """The six white-box filters reduced to per-image constants, applied band by band.

    The temperature and contrast filters read whole-image means (of the composite, and of the
    image after temperature + brightness); once those are known every filter is per pixel, so
    any window of the full-resolution output can be computed on its own
    (:meth:`render`). Equal to :meth:`FilterHarmonizer.restore_image`'s last output up to float
    rounding.

    Args:
        arguments: ``(B, 6)`` filter arguments (clamped to [-1, 1] here).
        means: ``(B, 3)`` channel means of the full composite (float64 or float32).
        threshold: ``(B,)`` mean of the image after the first two filters (the contrast
            filter's pivot), or ``None`` to be set later with :meth:`set_threshold`.
    """

    eps = SaturationFilter.eps

    def __init__(self, arguments: torch.Tensor, means: torch.Tensor, threshold: Optional[torch.Tensor] = None) -> None:
        x = arguments.detach().float().clamp(-1, 1)
        b = x.shape[0]
        col = [x[:, i].reshape(b, 1, 1, 1) for i in range(x.shape[1])]
        self.arguments = x
        self.gains = temperature_gains(means.float().reshape(b, 3, 1, 1), col[0])
        self.alpha = brightness_gain(col[1])
        self.exact_brightness = bool((self.alpha > FUSED_BRIGHTNESS_MAX_GAIN).any())
        self.k = contrast_gain(col[2])
        self.sat = col[3]
        self.highlight_exp = col[4] + 1
        self.shadow_exp = 1 - col[5]
        self.threshold = None if threshold is None else threshold.float().reshape(b, 1, 1, 1)

    def first_two(self, image: torch.Tensor) -> torch.Tensor:
        """Temperature + brightness of a band ``(B, 3, h, w)`` (a new tensor)."""
        return _temperature_brightness_(image.float().clone(), self.gains, self.alpha, self.exact_brightness)

    def lut(self, levels: int = 256) -> torch.Tensor:
        """``(B, 3, levels)``: temperature + brightness of the values ``v / (levels - 1)``
        (per channel: only valid without :attr:`exact_brightness`)."""
        if self.exact_brightness:
            raise RuntimeError("FilterPlan.lut: the exact (HSV) brightness mixes the channels; no per-channel table")
        v = torch.arange(levels, dtype=torch.float32).div_(levels - 1)
        return _temperature_brightness_(v.expand(self.gains.shape[0], 3, levels).clone(), self.gains.reshape(-1, 3, 1), self.alpha.reshape(-1, 1, 1))

    def set_threshold(self, threshold: torch.Tensor) -> None:
        self.threshold = threshold.float().reshape(-1, 1, 1, 1)

    def to(self, device: Any) -> "FilterPlan":
        """Move the per-image constants (in place); returns ``self``."""
        for k, v in vars(self).items():
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self

    def render(self, composite: torch.Tensor, mask: torch.Tensor, rows: Any = None, cols: Any = None) -> torch.Tensor:
        """Filtered and pasted window: ``composite (B, 3, h, w)``, ``mask (B, 1, h, w)`` in
        [0, 1] -> ``(B, 3, h, w)`` in [0, 1] (``filtered * mask + composite * (1 - mask)``).
        ``rows`` / ``cols`` (the window's place in the image) are not needed: every filter is
        per pixel once the plan is made.

        Fused and in place; equal to the official filters up to float rounding: the HSV round
        trip of the brightness filter is a plain scaling (the round trip itself above
        :data:`FUSED_BRIGHTNESS_MAX_GAIN`), the saturation branch
        ``s if x + s > 1 else 1 - x`` is ``max(s, 1 - x)``, and the highlight / shadow powers are
        ``exp(e * log(v))``."""
        if self.threshold is None:
            raise RuntimeError("FilterPlan.render: the contrast threshold is not set (set_threshold)")
        eps = self.eps
        one = self.arguments.shape[0] == 1  # one image: per-image constants as Python scalars

        def c(t: torch.Tensor) -> Union[float, torch.Tensor]:
            return float(t) if one else t

        comp = composite.float()
        y = torch.mul(comp, self.gains).clamp_(0.0, 1.0)  # temperature
        y = _brightness_(y, c(self.alpha), self.exact_brightness)  # brightness
        t = torch.sub(y, c(self.threshold)).mul_(c(self.k))  # contrast: y + (y - mean) * k
        y.add_(t).clamp_(0.0, 1.0)
        # saturation (HSL), see SaturationFilter
        cmin, cmax = y.amin(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)
        var, ran = torch.sub(cmax, cmin), cmax.add_(cmin)
        mean = ran.mul(0.5)
        # HSL saturation: var / (ran + eps) where mean < 0.5, else var / ((2 - ran) + eps)
        sat = var.div_(torch.minimum(ran, torch.rsub(ran, 2.0)).add_(eps))
        diff = torch.sub(y, mean, out=t)  # image - mean
        x = self.sat
        if bool((x >= 0).all()):
            a = sat.clamp_(min=1 - x) if not one else sat.clamp_(min=1.0 - float(x))
            y.addcmul_(diff, a.add_(eps).reciprocal_().sub_(1.0))
        elif bool((x < 0).all()):
            y = diff.mul_(c(1 + x)).add_(mean)
        else:  # mixed signs in the batch: both branches, blended as the official filter
            pos = (x >= 0).float()
            a = torch.maximum(sat, 1 - x).add_(eps).reciprocal_().sub_(1.0)
            a = a * pos + (1 + x) * (1 - pos)
            y = (y * pos + mean * (1 - pos)).addcmul_(diff, a)
        y.clamp_(0.0, 1.0)
        # highlight: 1 - ((1 - y) + 1e-9) ** (1 + x); shadow: (y + 1e-9) ** (1 - x)
        inv = y.neg_().add_(1.0).add_(1e-9).log_().mul_(c(self.highlight_exp)).exp_().clamp_(0.0, 1.0)
        y = inv.neg_().add_(1.0)
        y.add_(1e-9).log_().mul_(c(self.shadow_exp)).exp_().clamp_(0.0, 1.0)
        # paste: y * mask + composite * (1 - mask) (a non-finite y never leaks into the background)
        y.nan_to_num_(0.0)
        m = mask.to(y.dtype)
        return y.mul_(m).addcmul_(comp, torch.rsub(m, 1.0))


def channel_histograms(composite: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 256)`` int64 value counts of a uint8 ``(B, 3, H, W)`` image."""
    return torch.stack([
        torch.stack([torch.bincount(composite[i, ch].reshape(-1), minlength=256) for ch in range(3)])
        for i in range(composite.shape[0])
    ])


def full_image_stats(plan: FilterPlan, composite: torch.Tensor, band_pixels: int = 1 << 20, hist: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The contrast pivot of :class:`FilterPlan` for ``composite (B, 3, H, W)``: the mean of
    the image after temperature + brightness. Float input: in bands of rows (float64 sums);
    uint8 input (``v / 255``): a 256-entry table weighted by the channel histograms ``hist``
    (:func:`channel_histograms`, computed when not given), or bands like float input when the
    plan needs the exact (channel-mixing) brightness. Returns ``(B,)`` float64."""
    b, _, height, width = composite.shape
    is_u8 = composite.dtype == torch.uint8
    if is_u8 and not plan.exact_brightness:
        hist = channel_histograms(composite) if hist is None else hist
        return (hist.double() * plan.lut(256).double().to(hist.device)).sum(dim=(1, 2)) / (3 * height * width)
    band = max(1, band_pixels // max(width, 1))
    tot = torch.zeros(b, dtype=torch.float64, device=composite.device)
    for r0 in range(0, height, band):
        x = composite[:, :, r0:r0 + band]
        x = x.float().div_(255.0) if is_u8 else x
        tot += plan.first_two(x).sum(dim=(1, 2, 3), dtype=torch.float64)
    return tot / (3 * height * width)


def channel_means(composite: torch.Tensor, hist: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(B, 3)`` channel means of ``(B, 3, H, W)`` float in [0, 1] (float32, as the official
    filter) or uint8 read as ``v / 255`` (float64, exact, from the histograms ``hist``)."""
    if composite.dtype == torch.uint8:
        hist = channel_histograms(composite) if hist is None else hist
        levels = torch.arange(256, dtype=torch.float64, device=hist.device)
        return (hist.double() * levels).sum(dim=2) / (255.0 * composite.shape[-2] * composite.shape[-1])
    return composite.float().mean(dim=(2, 3))


def bilinear_view(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(image, size, mode="bilinear", align_corners=False)`` (no antialias) of
    ``(B, C, H, W)`` float, or of uint8 read as ``v / 255``: only the source rows and columns
    the bilinear taps touch are converted (float rounding may differ from ``F.interpolate``)."""
    if image.dtype != torch.uint8:
        return F.interpolate(image.float(), size, mode="bilinear", align_corners=False)

    def taps(n_in: int, n_out: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = (scale * (torch.arange(n_out, dtype=torch.float32) + 0.5) - 0.5).clamp_(min=0)
        i0 = src.long().clamp_(max=n_in - 1)
        i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
        lam = src - i0.float()
        return i0, i1, lam

    y0, y1, ly = taps(image.shape[-2], size[0])
    x0, x1, lx = taps(image.shape[-1], size[1])
    rows = torch.cat([y0, y1])
    sub = image.index_select(-2, rows).float().div_(255.0)
    sub = (1 - lx) * sub.index_select(-1, x0) + lx * sub.index_select(-1, x1)  # (B, C, 2h, w)
    h = size[0]
    ly = ly.view(-1, 1)
    return (1 - ly) * sub[..., :h, :] + ly * sub[..., h:, :]


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
Arguments = Union[torch.Tensor, Sequence[torch.Tensor]]


class FilterHarmonizer(Harmonizer):
    """Harmonizer: EfficientNet-B0 on a low-resolution view -> six filter arguments -> six
    white-box filters applied to the full-resolution composite.

    Any input size works (the encoder sees a bilinear resize to ``input_size``).

    Args:
        width_coefficient: encoder channel multiplier (1.0: EfficientNet-B0).
        base_channels: width of the regressor's running state (160 official).
        input_size: ``(h, w)`` of the encoder's view (official 256x256).
        drop_path_rate: encoder stochastic depth in train mode (official 0.2).
    """

    native_resolution = True  # the filters run on the full image; the encoder sees a 256 view
    composites_with_mask = True  # .image is already pasted on the background through the mask
    band_pixels: int = 1 << 18  # full-resolution pixels filtered at once (inference)
    plan_threads: int = 1  # harmonize(): the 256x256 encoder (~0.4 GFLOP, ~300 small ops) runs
    # single-threaded: with more intra-op threads it is dominated by OpenMP synchronisation, and
    # on a shared machine each of its parallel regions waits for a time slice

    filter_names: Tuple[str, ...] = tuple(FILTER_TYPES)

    def __init__(
        self,
        width_coefficient: float = 1.0,
        base_channels: int = 160,
        input_size: Sequence[int] = (256, 256),
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.encoder = DualStemEfficientNet(width_coefficient, drop_path_rate)
        self.regressor = CascadeArgumentRegressor(self.encoder.num_features, base_channels, len(self.filter_names))
        self.filters = nn.ModuleList(FILTER_TYPES[n]() for n in self.filter_names)

    # -- official API ------------------------------------------------------------------------
    def make_lowres(self, composite: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The encoder's view: bilinear resize (``align_corners=False``, no antialias) of both
        inputs to ``input_size``, as the official ``predict_arguments``."""
        size = self.input_size
        return (
            F.interpolate(composite, size, mode="bilinear", align_corners=False),
            F.interpolate(mask, size, mode="bilinear", align_corners=False),
        )

    def encode_arguments(self, composite_lowres: torch.Tensor, mask_lowres: torch.Tensor) -> torch.Tensor:
        """Arguments ``(B, 6)`` (unclamped) from a low-resolution view used as given:
        ``composite_lowres (B, 3, h, w)`` in [0, 1], ``mask_lowres (B, 1, h, w)`` in [0, 1]."""
        fg = torch.cat((composite_lowres, mask_lowres), dim=1)
        bg = torch.cat((composite_lowres, 1 - mask_lowres), dim=1)
        return self.regressor(self.encoder(fg, bg))

    def predict_arguments(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Official ``predict_arguments``: resize to ``input_size``, encode, regress.

        Returns ``(B, 6)`` unclamped arguments, columns in :attr:`filter_names` order.
        """
        return self.encode_arguments(*self.make_lowres(composite, mask))

    def restore_image(self, composite: torch.Tensor, mask: torch.Tensor, arguments: Arguments) -> List[torch.Tensor]:
        """Official ``restore_image``: apply the six filters in order to the full composite.

        Args:
            composite: ``(B, 3, H, W)`` in [0, 1].
            mask: ``(B, 1, H, W)`` in [0, 1], foreground = 1.
            arguments: ``(B, 6)`` tensor, or a sequence of six ``(B, 1)`` / ``(B,)`` tensors;
                clamped to [-1, 1] here.

        Returns:
            six ``(B, 3, H, W)`` images in [0, 1]: after filter ``i`` the filtered foreground
            pasted on the original background (``out_i * mask + composite * (1 - mask)``);
            the filters are chained on the unmasked image.
        """
        if isinstance(arguments, torch.Tensor):
            if arguments.ndim != 2 or arguments.shape[1] != len(self.filters):
                raise ValueError(f"arguments must be (B, {len(self.filters)}), got {tuple(arguments.shape)}")
            arguments = arguments.unbind(dim=1)
        arguments = list(arguments)
        if len(arguments) != len(self.filters):
            names = ", ".join(self.filter_names)
            raise ValueError(f"expected {len(self.filters)} arguments ({names}), got {len(arguments)}")
        outputs, image = [], composite
        for filt, arg in zip(self.filters, arguments):
            image = filt(image, arg.clamp(-1, 1).reshape(-1, 1, 1, 1))
            outputs.append(image * mask + composite * (1 - mask))
        return outputs

    # -- forward contract --------------------------------------------------------------------
    def forward(
        self,
        composite: torch.Tensor,
        mask: torch.Tensor,
        domain: Optional[str] = None,
        composite_lowres: Optional[torch.Tensor] = None,
        mask_lowres: Optional[torch.Tensor] = None,
    ) -> HarmonizationOutput:
        """``composite (B, 3, H, W)``, ``mask (B, 1, H, W)`` in [0, 1] -> harmonized image.

        ``composite_lowres`` / ``mask_lowres`` (both or neither, ``(B, 3|1, h, w)``): the view
        the encoder reads; when not given it is :meth:`make_lowres` of the inputs.
        ``.image`` (= ``.image_normalized``, the official output space is [0, 1]) is the last
        filter's output; ``.extras["arguments"]`` the unclamped ``(B, 6)`` arguments.
        """
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        if (composite_lowres is None) != (mask_lowres is None):
            raise ValueError("give both composite_lowres and mask_lowres, or neither")
        if composite_lowres is None:
            composite_lowres, mask_lowres = self.make_lowres(composite, mask)
        else:
            check_inputs(composite_lowres, mask_lowres, check_range=not (self.training and composite.is_cuda))
            if composite_lowres.shape[0] != composite.shape[0]:
                raise ValueError(
                    f"composite_lowres has batch {composite_lowres.shape[0]}, composite has {composite.shape[0]}"
                )
        arguments = self.encode_arguments(composite_lowres, mask_lowres)
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if tracing or (torch.is_grad_enabled() and (arguments.requires_grad or composite.requires_grad)):
            image = self.restore_image(composite, mask, arguments)[-1]  # autograd / export: the official chain
        else:  # inference: the fused filters, band by band
            plan = self.plan_from_arguments(arguments, composite)
            image = torch.empty_like(composite, dtype=torch.float32)
            height, width = composite.shape[-2:]
            band = max(1, self.band_pixels // max(width, 1))
            for r0 in range(0, height, band):
                image[:, :, r0:r0 + band] = plan.render(composite[:, :, r0:r0 + band], mask[:, :, r0:r0 + band])
        return HarmonizationOutput(image=image, image_normalized=image, extras={"arguments": arguments})

    # -- full-resolution inference in windows ----------------------------------------------------
    def plan_from_arguments(self, arguments: torch.Tensor, composite: torch.Tensor) -> FilterPlan:
        """The :class:`FilterPlan` of ``arguments (B, 6)`` for ``composite (B, 3, H, W)`` (float
        in [0, 1], or uint8 read as ``v / 255``): whole-image means computed here."""
        hist = channel_histograms(composite) if composite.dtype == torch.uint8 else None
        plan = FilterPlan(arguments.float(), channel_means(composite, hist))
        plan.set_threshold(full_image_stats(plan, composite, self.band_pixels, hist))
        return plan

    def fullres_plan(self, composite: torch.Tensor, mask: torch.Tensor) -> FilterPlan:
        """Run the network and return what renders any window of the full-resolution output.

        ``composite (B, 3, H, W)`` float in [0, 1] or uint8 (``v / 255``), ``mask (B, 1, H, W)``
        float in [0, 1] or uint8 (``v / 255``). ``plan.render(composite_window, mask_window)``
        (float in [0, 1]) gives ``.image`` on that window up to float rounding; the network runs
        under any active autocast, the filters in float32."""
        size = self.input_size
        arguments = self.encode_arguments(bilinear_view(composite, size), bilinear_view(mask, size)).float()
        return self.plan_from_arguments(arguments, composite)


# --------------------------------------------------------------------------------------------
# official checkpoint conversion
# --------------------------------------------------------------------------------------------
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
       "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_fg": "conv_fg", "_bn_fg": "bn_fg", "_conv_bg": "conv_bg", "_bn_bg": "bn_bg",
        "_conv_head": "conv_head", "_bn1": "bn2"}
_BLOCK = re.compile(r"^backbone\._blocks\.(\d+)\.(_\w+?)\.(.+)$")
_TOP_KEY = re.compile(r"^backbone\.(_\w+?)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_HEAD = re.compile(r"^regressor\.headers\.(\d+)\.([01])\.(weight|bias)$")


def _block_index(flat: int) -> Tuple[int, int]:
    for stage, n in enumerate(STAGE_REPEATS):
        if flat < n:
            return stage, flat
        flat -= n
    raise KeyError(flat)


def is_official_layout(keys: Sequence[str]) -> bool:
    """True for the official key names (``backbone._blocks.*``, ``regressor.headers.*``)."""
    return any(k.startswith(("backbone._", "regressor.headers.")) for k in keys)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official Harmonizer names -> ours (values untouched); other layouts pass through.

    ``backbone._blocks.{i}.{layer}`` -> ``encoder.blocks.{stage}.{j}.{timm layer}``,
    ``backbone._conv_fg`` -> ``encoder.conv_fg``, ``backbone._conv_head`` / ``_bn1`` ->
    ``encoder.conv_head`` / ``bn2``, ``regressor.f`` / ``g`` -> ``regressor.proj_f`` /
    ``proj_g``, ``regressor.headers.{i}.{0,1}`` -> ``regressor.heads.{i}.fc_state`` / ``fc_out``.
    An official key this does not know raises ``KeyError`` naming it.
    """
    if not is_official_layout(list(state_dict)):
        return dict(state_dict)
    out: Dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        new = None
        m = _BLOCK.match(k)
        if m:
            flat, layer, tail = int(m.group(1)), m.group(2), m.group(3)
            if flat >= sum(STAGE_REPEATS):
                raise KeyError(f"official key {k!r}: EfficientNet-B0 has {sum(STAGE_REPEATS)} blocks")
            stage, j = _block_index(flat)
            table = _DS if stage == 0 else _IR
            if layer in table:
                new = f"encoder.blocks.{stage}.{j}.{table[layer]}.{tail}"
        elif _TOP_KEY.match(k):
            m = _TOP_KEY.match(k)
            if m.group(1) in _TOP:
                new = f"encoder.{_TOP[m.group(1)]}.{m.group(2)}"
        elif k.startswith(("regressor.f.", "regressor.g.")):
            new = f"regressor.proj_{k[10]}.{k[12:]}"
        elif _HEAD.match(k):
            m = _HEAD.match(k)
            new = f"regressor.heads.{m.group(1)}.{('fc_state', 'fc_out')[int(m.group(2))]}.{m.group(3)}"
        if new is None:
            raise KeyError(f"unexpected key {k!r} in an official Harmonizer state dict")
        out[new] = v
    return out


FilterHarmonizer.checkpoint_filter_fn = staticmethod(checkpoint_filter_fn)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# registered entrypoint
# --------------------------------------------------------------------------------------------
_HARMONIZER = dict(width_coefficient=1.0, base_channels=160, input_size=(256, 256), drop_path_rate=0.2)

default_cfgs = {
    "harmonizer": PretrainedCfg(
        paper_ids="arXiv:2207.01322",
        paper_name="Harmonizer: Learning to Perform White-Box Image and Video Harmonization",
        input_size=(3, 256, 256),
        mean=(0.0, 0.0, 0.0),  # inputs and outputs are plain [0, 1] RGB
        std=(1.0, 1.0, 1.0),
        origin_url="https://github.com/ZHKKKe/Harmonizer",
        license="official code and weights: CC BY-NC-SA 4.0",
        notes="official harmonizer.pth (Google Drive, see the official pretrained/README.md) loads "
              "through checkpoint_path=; keys converted by harmonykit.models.harmonizer.checkpoint_filter_fn",
        tiny_args=dict(width_coefficient=0.25, base_channels=32, input_size=(64, 64)),
    ),
}
register_pretrained_cfgs(default_cfgs)
register_layout(
    CheckpointLayout(
        "official_harmonizer",
        detect=lambda keys: is_official_layout(list(keys)),
        to_model=lambda model, sd, domain: (checkpoint_filter_fn(sd), []),
        priority=30,
    )
)


@register_model
def harmonizer(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Harmonizer (ECCV 2022): EfficientNet-B0 + six white-box filters, 4,726,882 parameters."""
    kwargs = dict(kwargs)
    opts = pop_pretrained_opts(kwargs)
    args = dict(_HARMONIZER)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    unknown = sorted(set(args) - set(_HARMONIZER))
    if unknown:
        raise TypeError(f"model 'harmonizer': unexpected argument(s) {unknown}; accepted: {sorted(_HARMONIZER)}")
    return finalize_model(FilterHarmonizer(**args), "harmonizer", args, pretrained=pretrained, **opts)
