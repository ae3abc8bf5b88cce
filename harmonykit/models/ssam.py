"""S2AM UNet and iSSAM (Sofiiuk et al., "Foreground-aware Semantic Representations for Image
Harmonization", WACV 2021), numerically equal to the official ``improved_ssam256`` /
``ssam256`` / ``improved_ssam512`` of SamsungLabs/image_harmonization.

The network is a UNet whose decoder stages merge the encoder feature by concatenation and,
from ``attend_from`` on, pass it through a spatial-separated attention module (S2AM:
background / foreground / mix channel gates, split by the blurred mask).

Stage layout (the :class:`~harmonykit.models.base.StageBackbone` protocol):

- ``encoder[i]``: [MaxPool2d(2) for ``i > 0``] -> two (conv3x3 -> [BN] -> ReLU); output
  ``e_i`` at stride ``2**i`` with ``channels[i]`` channels;
- ``decoder[j]`` for ``j < depth - 1``: bilinear x2 (align_corners) -> conv3x3 -> ReLU,
  concatenated with ``e_{depth-2-j}``, [S2AM], two (conv3x3 -> BN -> ReLU): output shaped as
  ``e_{depth-2-j}``; ``decoder[depth-1]`` is the identity (the last UNet stage already works
  at full resolution), so encoder and decoder have the same number of stages and
  ``decoder[depth-k-1]`` (the ``g`` of a split at ``k``) has the shape of ``e_{k-1}`` (``f``);
- ``head``: the blending layer ``A * I + (1 - A) * to_rgb(F)`` with
  ``A = sigmoid(3 conv_attention(F))`` (``image_fusion=True``, iSSAM) or, without it (SSAM),
  ``to_rgb(F)`` (the official SSAM does not composite with the mask).

Inputs of any size that is a multiple of ``2**(depth-1)`` run (the official ``Predictor``
zero-pads to multiples of ``2**(depth+1)``; ``harmonize()`` handles other sizes).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import register_single_network_layout
from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, StageBackbone, StageOutput
from harmonykit.models.charmnet import make_charmnet_entrypoints
from harmonykit.models.layers import BlendingHead, init_weights
from harmonykit.normalization import denormalize, normalize
from harmonykit.registry import BACKBONES

__all__ = [
    "SSAMBackbone",
    "ConvNormAct",
    "DoubleConv",
    "ChannelGate",
    "SpatialSeparatedAttention",
    "SSAMEncoderStage",
    "SSAMDecoderStage",
    "ssam_channels",
    "build_ssam_stages",
    "run_ssam_unet",
    "official_ssam_to_ours",
    "issam",
    "ssam256",
    "issam512",
]


class ConvNormAct(nn.Module):
    """Conv2d(k=3, s=1, p=1) -> [BatchNorm2d] -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
        self.norm = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DoubleConv(nn.Module):
    """Two :class:`ConvNormAct` (``in -> out -> out``)."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, batchnorm)
        self.conv2 = ConvNormAct(out_channels, out_channels, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ChannelGate(nn.Module):
    """Channel attention: ``x * sigmoid(fc2(relu(fc1([avgpool(x), maxpool(x)]))))``;
    hidden width ``max(C // 16, 8)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 16, 8)
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))
        return x * w[..., None, None]


def gaussian_kernel(size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(1, 1, size, size)`` (product of two 1-D Gaussians)."""
    t = torch.arange(size, dtype=torch.float32)
    g = torch.exp(-(((t - (size - 1) / 2.0) / sigma) ** 2) / 2) / (sigma * math.sqrt(2 * math.pi))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).view(1, 1, size, size)


class SpatialSeparatedAttention(nn.Module):
    """S2AM: ``M * (learn(fg_gate(x)) + mix_gate(x)) + (1 - M) * bg_gate(x)``, where ``M`` is the
    mask resized to ``x`` (bilinear, align_corners) and blurred (7x7 Gaussian, sigma 1, zero
    padding). ``learn`` is two (conv3x3 without bias -> BN -> ReLU) through ``mid_k * C`` channels.
    """

    def __init__(self, channels: int, mid_k: float = 2.0) -> None:
        super().__init__()
        self.background_gate = ChannelGate(channels)
        self.foreground_gate = ChannelGate(channels)
        self.mix_gate = ChannelGate(channels)
        mid = int(mid_k * channels)
        self.learning = nn.Sequential()
        self.learning.add_module("conv1", ConvNormAct(channels, mid, batchnorm=True, bias=False))
        self.learning.add_module("conv2", ConvNormAct(mid, channels, batchnorm=True, bias=False))
        self.register_buffer("blur_kernel", gaussian_kernel(7, 1.0))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(mask.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=True)
        m = F.conv2d(m, self.blur_kernel.to(x.dtype), padding=self.blur_kernel.shape[-1] // 2)
        foreground = self.learning(self.foreground_gate(x))
        return m * (foreground + self.mix_gate(x)) + (1 - m) * self.background_gate(x)


class SSAMEncoderStage(nn.Module):
    """[MaxPool2d(2)] -> :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool, batchnorm: bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2) if pool else nn.Identity()
        self.convs = DoubleConv(in_channels, out_channels, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class SSAMDecoderStage(nn.Module):
    """Upsample x2 -> conv3x3 -> ReLU, concatenate ``[skip, up]``, [S2AM], :class:`DoubleConv` (BN)."""

    def __init__(self, in_channels: int, out_channels: int, attention_mid_k: Optional[float] = None) -> None:
        super().__init__()
        self.up_conv = ConvNormAct(in_channels, out_channels, batchnorm=False)
        self.attention = SpatialSeparatedAttention(2 * out_channels, attention_mid_k) if attention_mid_k is not None else None
        self.convs = DoubleConv(2 * out_channels, out_channels, batchnorm=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        up = self.up_conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))
        x = torch.cat([skip, up], dim=1)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.convs(x)


def ssam_channels(depth: int, ch: int, max_channels: int) -> List[int]:
    """Encoder stage widths: ``ch``, then doubled at every stage, capped at ``max_channels``."""
    out = [ch]
    for _ in range(1, depth):
        out.append(min(2 * out[-1], max_channels))
    return out


def build_ssam_stages(
    depth: int, ch: int, max_channels: int, batchnorm_from: int, attend_from: int, attention_mid_k: float, in_channels: int = 4
) -> Tuple[nn.ModuleList, nn.ModuleList, List[int]]:
    """The encoder and decoder stage lists of an S2AM UNet and the encoder widths."""
    if depth < 2:
        raise ValueError(f"depth must be at least 2, got {depth}")
    if ch < 1 or max_channels < 1:
        raise ValueError(f"need ch >= 1 and max_channels >= 1, got ch={ch}, max_channels={max_channels}")
    chs = ssam_channels(depth, ch, max_channels)
    encoder = nn.ModuleList()
    prev = in_channels
    for i, c in enumerate(chs):
        encoder.append(SSAMEncoderStage(prev, c, pool=i > 0, batchnorm=0 <= batchnorm_from <= i))
        prev = c
    decoder = nn.ModuleList()
    for d in range(depth - 1):
        mid_k = attention_mid_k if 0 <= attend_from <= d else None
        decoder.append(SSAMDecoderStage(chs[depth - 1 - d], chs[depth - 2 - d], mid_k))
    decoder.append(nn.Identity())  # full-resolution output stage (no layer)
    return encoder, decoder, chs


def run_ssam_unet(
    encoder: Sequence[nn.Module],
    decoder: Sequence[nn.Module],
    x: torch.Tensor,
    mask: torch.Tensor,
    split_depth: Optional[int] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Run the stages on ``x (B, C_in, H, W)``; returns (last feature, f, g) (f, g: ``None``
    without ``split_depth``)."""
    depth = len(encoder)
    feats: List[torch.Tensor] = []
    for stage in encoder:
        x = stage(x)
        feats.append(x)
    f = feats[split_depth - 1] if split_depth else None
    g = None
    for j, stage in enumerate(decoder):
        x = stage(x, feats[depth - 2 - j], mask) if j < depth - 1 else stage(x)
        if split_depth and j == depth - split_depth - 1:
            g = x
    return x, f, g


@BACKBONES.register("ssam")
class SSAMBackbone(StageBackbone):
    """The S2AM UNet (SSAM / iSSAM).

    Args:
        depth: encoder stages (4 for the 256 px models, 6 for ``improved_ssam512``).
        ch: width of the first stage (doubled at every stage).
        max_channels: channel cap.
        batchnorm_from: first encoder stage with BatchNorm (the decoder always has it).
        attend_from: first decoder stage with S2AM (``-1``: none).
        attention_mid_k: width factor of the S2AM learning block.
        image_fusion: iSSAM's blending layer; without it the output is ``to_rgb(F)`` (SSAM).
        init: weight init (``"xavier_gluon"``: the official training init).

    Forward: ``model(composite, mask)`` with composite ``(B, 3, H, W)`` in [0, 1], mask
    ``(B, 1, H, W)`` in [0, 1], H and W multiples of ``2**(depth-1)``. ``.image`` is the
    denormalised official output (not clamped); ``.attention`` the blending map (iSSAM).
    """

    def __init__(
        self,
        depth: int = 4,
        ch: int = 32,
        max_channels: int = 512,
        batchnorm_from: int = 2,
        attend_from: int = 2,
        attention_mid_k: float = 0.5,
        image_fusion: bool = True,
        init: str = "xavier_gluon",
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, chs = build_ssam_stages(depth, ch, max_channels, batchnorm_from, attend_from, attention_mid_k)
        self.encoder_channels = chs
        self.head = BlendingHead(chs[0], image_fusion=image_fusion)  # the same head as iDIH
        self.image_fusion = image_fusion
        self.feature_info = [FeatureInfo(c, 2**i, f"encoder.{i}") for i, c in enumerate(chs)]
        self.size_divisor = 2 ** (depth - 1)
        self.min_size = 2 ** (depth - 1)
        self.init_scheme = init
        init_weights(self, init)

    def stage_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def run_stages(cls, config, encoder, decoder, head, composite, mask, split_depth=None) -> StageOutput:
        """Normalise, run the UNet on ``[image, mask]``, apply the head; ``image`` denormalised."""
        image = normalize(composite)
        x = torch.cat([image, mask.to(image.dtype)], dim=1)
        feats, f, g = run_ssam_unet(encoder, decoder, x, mask, split_depth)
        out, attention = head(feats, image)
        return StageOutput(image=denormalize(out), image_normalized=out, attention=attention, features_in=f, features_out=g)

    @staticmethod
    def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Official Samsung S2AM keys -> ours (other layouts pass through unchanged)."""
        return official_ssam_to_ours(state_dict) if is_official_ssam(state_dict) else dict(state_dict)


# -- official checkpoint layout ------------------------------------------------------------
# encoder.block0.convs.block.1.block.0.weight, encoder.blocks_connected.block3.convs...,
# decoder.up_blocks.2.upconv.1.block.0.weight, decoder.up_blocks.2.attention.mix_gate.
# attention_transform.2.bias, ...attention.learning_block.0.block.1.running_var,
# ...attention.mask_blurring.weight, decoder.conv_attention.weight, decoder.to_rgb.bias
_LAYER = {"0": "conv", "1": "norm"}
_FC = {"0": "fc1", "2": "fc2"}
_SSAM_RULES: List[Tuple[re.Pattern, Any]] = [
    (re.compile(r"^encoder\.(?:blocks_connected\.)?block(\d+)\.convs\.block\.([01])\.block\.([01])\.(.+)$"),
     lambda m: f"encoder.{m[1]}.convs.conv{int(m[2]) + 1}.{_LAYER[m[3]]}.{m[4]}"),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.upconv\.1\.block\.0\.(.+)$"),
     lambda m: f"decoder.{m[1]}.up_conv.conv.{m[2]}"),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.convs\.block\.([01])\.block\.([01])\.(.+)$"),
     lambda m: f"decoder.{m[1]}.convs.conv{int(m[2]) + 1}.{_LAYER[m[3]]}.{m[4]}"),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.attention\.(background|foreground|mix)_gate\.attention_transform\.([02])\.(.+)$"),
     lambda m: f"decoder.{m[1]}.attention.{m[2]}_gate.{_FC[m[3]]}.{m[4]}"),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.attention\.learning_block\.([01])\.block\.([01])\.(.+)$"),
     lambda m: f"decoder.{m[1]}.attention.learning.conv{int(m[2]) + 1}.{_LAYER[m[3]]}.{m[4]}"),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.attention\.mask_blurring\.weight$"),
     lambda m: f"decoder.{m[1]}.attention.blur_kernel"),
    (re.compile(r"^decoder\.(conv_attention|to_rgb)\.(.+)$"), lambda m: f"head.{m[1]}.{m[2]}"),
]


def is_official_ssam(state_dict: Mapping[str, Any]) -> bool:
    """Whether the keys are the official S2AM UNet's (``encoder.block0.convs.*``, ``decoder.up_blocks.*``)."""
    return any(k.startswith(("encoder.block0.convs.", "decoder.up_blocks.")) for k in state_dict)


def rename_keys(state_dict: Mapping[str, torch.Tensor], rules: Sequence[Tuple[re.Pattern, Any]], what: str) -> Dict[str, torch.Tensor]:
    """Rename every key by the first matching rule; a key no rule matches raises ``CheckpointError``."""
    from harmonykit.convert import CheckpointError

    out: Dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        for pattern, repl in rules:
            m = pattern.match(k)
            if m:
                out[repl(m)] = v
                break
        else:
            raise CheckpointError(f"unexpected key {k!r} in an official {what} state dict")
    return out


def official_ssam_to_ours(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official Samsung ``SSAMImageHarmonization`` names -> :class:`SSAMBackbone` names."""
    return rename_keys(state_dict, _SSAM_RULES, "S2AM (iSSAM/SSAM)")


register_single_network_layout(
    "official_ssam",
    # before official_idih (priority 10): both start with encoder.block0.; PCT-Net adds get_params.
    detect=lambda keys: is_official_ssam(dict.fromkeys(keys)) and not any(k.startswith("get_params.") for k in keys),
    to_ours=official_ssam_to_ours,
    priority=40,
)


# -- registered entrypoints ------------------------------------------------------------------

_ISSAM = dict(backbone="ssam", depth=4, ch=32, max_channels=512, batchnorm_from=2, attend_from=2,
              attention_mid_k=0.5, image_fusion=True, init="xavier_gluon")
_TINY = dict(ch=8, max_channels=16)
_PAPER = dict(paper_ids="arXiv:2006.00809", paper_name="Foreground-aware Semantic Representations for Image Harmonization")
_ORIGIN = dict(origin_url="https://github.com/SamsungLabs/image_harmonization",
               license="code: MPL-2.0 (SamsungLabs/image_harmonization); weights trained on iHarmony4 (research use)")

default_cfgs = {
    "issam": PretrainedCfg(**_PAPER, **_ORIGIN, input_size=(3, 256, 256), tiny_args=_TINY),
    "ssam256": PretrainedCfg(**_PAPER, **_ORIGIN, input_size=(3, 256, 256), tiny_args=_TINY),
    "issam512": PretrainedCfg(**_PAPER, **_ORIGIN, input_size=(3, 512, 512), tiny_args=_TINY),
    "issam.samsung_ihd4": PretrainedCfg(
        url="https://github.com/SamsungLabs/image_harmonization/releases/download/v1.0/issam256.pth",
        train_datasets=["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"],
        metric_protocol="idih",
        notes="official improved_ssam256 checkpoint in the Samsung key layout; converted on load",
    ),
}
register_pretrained_cfgs(default_cfgs)


@register_model
def issam(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iSSAM-256 (Samsung ``improved_ssam256``): depth 4, ch 32, S2AM in the last decoder stage,
    blending layer; 2,185,340 parameters."""
    return build_model("issam", _ISSAM, kwargs, pretrained=pretrained)


@register_model
def ssam256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """SSAM-256 (Samsung ``ssam256``): ch 64, S2AM width factor 2, no blending layer."""
    return build_model("ssam256", dict(_ISSAM, ch=64, attention_mid_k=2.0, image_fusion=False), kwargs, pretrained=pretrained)


@register_model
def issam512(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iSSAM-512 (Samsung ``improved_ssam512``): depth 6, S2AM from decoder stage 3."""
    return build_model("issam512", dict(_ISSAM, depth=6, attend_from=3), kwargs, pretrained=pretrained)


_ENTRIES = make_charmnet_entrypoints("issam", dict(_ISSAM, init="normal"), _TINY, split_depth=3)
for _name, _fn in _ENTRIES.items():
    globals()[_name] = _fn
    __all__.append(_name)
