"""Hao, Iizuka, Fukui, "Image Harmonization with Attention-based Deep Feature Modulation"
(BMVC 2020), numerically equal to the official ``Dominoer/bmvc2020_image_harmonization``
``model.Network``.

An encoder of nine conv-BN-ReLU blocks (three with stride 2, so 1/8 of the input), a
foreground-background feature modulation module at the bottleneck (self-attention, then an
attention from foreground queries to background keys/values whose result rescales the foreground
features to the attended background's per-channel std), and three bilinear-upsampling decoder
blocks with concatenated skips. The network predicts a residual: ``(composite + tanh(conv(x)))``,
clamped to [0, 1] by the network itself.

Input conventions of the official code (handled here): composite ``(B, 3, H, W)`` in [0, 1]
(``ToTensor``, no normalisation) minus the constant 0.4462414, concatenated with the mask
``(B, 1, H, W)`` in {0, 1}. H and W must be multiples of 8 (at least 16).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import register_single_network_layout, rename_by_table
from harmonykit.models._builder import finalize_model, pop_pretrained_opts, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import Harmonizer
from harmonykit.models.outputs import HarmonizationOutput

__all__ = [
    "ConvBnReLU",
    "UpConcatBlock",
    "SelfAttention",
    "FBFeatureModulation",
    "HaoAttentionNet",
    "hao_attention",
    "official_hao_to_ours",
    "ours_to_official_hao",
    "is_official_hao",
    "infer_hao_args",
]

INPUT_MEAN = 0.4462414
"""The constant the official network subtracts from the [0, 1] composite."""


def channel_std(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample, per-channel std over H, W (unbiased variance + ``eps``): ``(B, C, 1, 1)``."""
    b, c = x.shape[:2]
    return (x.reshape(b, c, -1).var(dim=2) + eps).sqrt().reshape(b, c, 1, 1)


class ConvBnReLU(nn.Module):
    """conv 3x3 (stride 1 or 2, bias) -> BatchNorm -> ReLU: ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class UpConcatBlock(nn.Module):
    """cat([x, skip]) -> bilinear x2 (align_corners=True) -> conv 3x3 -> BatchNorm -> ReLU.

    Forward: ``x (B, C_x, h, w)``, ``skip (B, C_s, h, w)`` -> ``(B, C_out, 2h, 2w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(torch.cat([x, skip], dim=1), scale_factor=self.scale_factor, mode="bilinear", align_corners=True)
        return F.relu(self.bn(self.conv(y)))


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Dot-product attention over pixels: query/key ``(B, C', h, w)``, value ``(B, C, h, w)`` ->
    ``(B, C, h, w)`` where pixel i is ``sum_j softmax_j(q_i . k_j) v_j``."""
    b, c, h, w = value.shape
    q = query.reshape(b, -1, h * w).transpose(1, 2)  # (B, N, C')
    k = key.reshape(b, -1, h * w)  # (B, C', N)
    attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, N, N)
    return torch.bmm(value.reshape(b, c, h * w), attn.transpose(1, 2)).reshape(b, c, h, w)


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``x + gamma * attend(q(x), k(x), v(x))`` (gamma starts at 0);
    query / key have ``C // 8`` channels. ``(B, C, h, w) -> (B, C, h, w)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.key = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * _attend(self.query(x), self.key(x), self.value(x)) + x


class FBFeatureModulation(nn.Module):
    """The paper's foreground-background feature modulation module (official ``FB_FMM``).

    After a self-attention, foreground features (``mask * x``) query the background features
    (``(1 - mask) * x``); the attended background ``a`` sets the scale of the foreground:
    ``x + gamma * fg * std(a) / std(fg)`` (per-channel std over the whole map). The mask is
    brought to the feature size as the official code does: ``round(avg_pool2d(mask, 2,
    stride=H / h))``.

    Forward: ``x (B, C, h, w)``, ``mask (B, 1, H, W)`` -> ``(B, C, h, w)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.self_attention = SelfAttention(channels)
        self.query = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.key = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def resize_mask(mask: torch.Tensor, height: int) -> torch.Tensor:
        full = mask.shape[2]
        if full == height:
            return mask
        return torch.round(F.avg_pool2d(mask, 2, stride=full // height))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.self_attention(x)
        fg_mask = self.resize_mask(mask, x.shape[2])
        background = (1 - fg_mask) * x
        foreground = fg_mask * x
        attended = _attend(self.query(foreground), self.key(background), self.value(background))
        modulated = foreground * (channel_std(attended) / channel_std(foreground))
        return x + self.gamma * modulated


class HaoAttentionNet(Harmonizer):
    """The Hao et al. network (official ``model.Network()``).

    Args:
        width_divisor: every width is divided by it (the 4 input and 3 output channels kept);
            1 is the official network. Must divide 16.

    Forward: ``model(composite, mask)`` with composite ``(B, 3, H, W)`` in [0, 1] and mask
    ``(B, 1, H, W)`` in [0, 1] (foreground = 1); H, W multiples of 8, at least 16. ``.image`` and
    ``.image_normalized`` are the official output (its own [0, 1] space, clamped by the
    network); ``.extras["residual"]`` is ``tanh(conv(x))``, the unclamped correction.
    """

    output_mean = (0.0, 0.0, 0.0)  # the output is an image in [0, 1] (the input is mean-shifted)
    output_std = (1.0, 1.0, 1.0)

    size_divisor = 8
    min_size = 16  # at 8 px the 1x1 bottleneck has no std (NaN in the official code too)

    def __init__(self, width_divisor: int = 1) -> None:
        super().__init__()
        if width_divisor < 1 or 16 % width_divisor:
            raise ValueError(f"width_divisor must divide 16 (1, 2, 4, 8, 16), got {width_divisor}")
        self.width_divisor = d = width_divisor
        enc = [(64, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (256, 1)]
        self.encoder = nn.ModuleList()
        prev = 4
        for c, s in enc:
            self.encoder.append(ConvBnReLU(prev, c // d, stride=s))
            prev = c // d
        self.skip_sources = (7, 3, 1)  # encoder output concatenated by decoder block 0, 1, 2
        self.fb_fmm = FBFeatureModulation(256 // d)
        self.decoder = nn.ModuleList(
            [
                UpConcatBlock((256 + 512) // d, 128 // d),
                UpConcatBlock((128 + 256) // d, 32 // d),
                UpConcatBlock((32 + 128) // d, 16 // d),
            ]
        )
        self.to_rgb = nn.Conv2d(16 // d, 3, kernel_size=3, padding=1)

    def forward_official(self, image: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Official-space forward: image ``(B, 3, H, W)`` in [0, 1], mask in {0, 1} ->
        ``(clamped output, tanh residual)``."""
        x = torch.cat([image - INPUT_MEAN, mask], dim=1)
        feats: List[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        x = self.fb_fmm(x, mask)
        for j, block in enumerate(self.decoder):
            x = block(x, feats[self.skip_sources[j]])
        residual = torch.tanh(self.to_rgb(x))
        return (image + residual).clamp(0, 1), residual

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        out, residual = self.forward_official(composite, mask.to(composite.dtype))
        return HarmonizationOutput(image=out, image_normalized=out, extras={"residual": residual})

    @staticmethod
    def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Official keys -> ours; any other layout is returned unchanged."""
        return official_hao_to_ours(state_dict) if is_official_hao(state_dict) else dict(state_dict)


# -- official checkpoint layout ----------------------------------------------------------------
_CONV_BN = ("conv2d.weight", "conv2d.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
_ATTN = ("query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias", "value_conv.weight", "value_conv.bias")


def _official_names() -> Dict[str, str]:
    """Our name -> official name, in the official ``state_dict()`` order."""
    names: Dict[str, str] = {}

    def block(ours: str, off: str) -> None:
        for t in _CONV_BN:
            mod, _, p = t.partition(".")
            names[f"{ours}.{'conv' if mod == 'conv2d' else 'bn'}.{p}"] = f"{off}.{t}"

    for i in range(9):
        block(f"encoder.{i}", f"Down{i + 1}")
    names["fb_fmm.gamma"] = "FB_FMM.gamma"
    names["fb_fmm.self_attention.gamma"] = "FB_FMM.SA.gamma"
    for prefix_ours, prefix_off in (("fb_fmm.self_attention", "FB_FMM.SA"), ("fb_fmm", "FB_FMM")):
        for t in _ATTN:
            mod, _, p = t.partition(".")
            names[f"{prefix_ours}.{mod[:-5]}.{p}"] = f"{prefix_off}.{t}"
    for j in range(3):
        block(f"decoder.{j}", f"Up{j + 1}")
    names["to_rgb.weight"] = "output.weight"
    names["to_rgb.bias"] = "output.bias"
    return names


_TO_OFFICIAL = _official_names()
_FROM_OFFICIAL = {v: k for k, v in _TO_OFFICIAL.items()}


def is_official_hao(sd: Mapping[str, Any]) -> bool:
    """True when the keys are the official network's (``Down1.conv2d.weight``, ``FB_FMM.*``)."""
    return any(k.startswith(("Down1.", "FB_FMM.")) for k in sd)


def official_hao_to_ours(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official ``model.Network`` names -> ours (values untouched)."""
    return rename_by_table(sd, _FROM_OFFICIAL, "an official Hao et al. (bmvc2020) state dict")


def ours_to_official_hao(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our ``hao_attention`` names -> the official names, in the official key order."""
    return rename_by_table(sd, _TO_OFFICIAL, "a harmonykit hao_attention state dict")


def infer_hao_args(sd: Mapping[str, torch.Tensor]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``("hao_attention", {"width_divisor": d})`` from the shapes of an official (or our)
    state dict of this network; ``None`` for any other layout."""
    if is_official_hao(sd):
        sd = official_hao_to_ours(sd)
    elif "fb_fmm.gamma" not in sd or "encoder.0.conv.weight" not in sd:
        return None
    return "hao_attention", {"width_divisor": 64 // int(sd["encoder.0.conv.weight"].shape[0])}


register_single_network_layout(
    "official_hao_attention", detect=lambda keys: is_official_hao(dict.fromkeys(keys)), to_ours=official_hao_to_ours,
    infer=infer_hao_args,
)


# -- registered entrypoint -------------------------------------------------------------------

default_cfgs = {
    "hao_attention": PretrainedCfg(
        paper_ids="BMVC 2020",
        paper_name="Image Harmonization with Attention-based Deep Feature Modulation",
        input_size=(3, 256, 256),
        size_divisor=8,
        min_size=16,
        mean=(INPUT_MEAN,) * 3,
        std=(1.0,) * 3,
        origin_url="https://github.com/Dominoer/bmvc2020_image_harmonization",
        license="no licence file in the official repository",
        tiny_args=dict(width_divisor=8),
        notes="official weights (checkpoint/network.pth via download_model.sh, Google Drive) load through checkpoint_path=",
    ),
}
register_pretrained_cfgs(default_cfgs)


@register_model
def hao_attention(pretrained: bool = False, width_divisor: Optional[int] = None, **kwargs: Any) -> nn.Module:
    """Hao et al. BMVC 2020 (official ``model.Network()``): 11,590,789 parameters."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    opts = pop_pretrained_opts(kwargs)
    width_divisor = 1 if width_divisor is None else int(width_divisor)
    if kwargs:
        raise TypeError(f"model 'hao_attention': unexpected argument(s) {', '.join(map(repr, sorted(kwargs)))}; accepted: width_divisor")
    args = dict(width_divisor=width_divisor)
    return finalize_model(HaoAttentionNet(**args), "hao_attention", args, pretrained=pretrained, **opts)
