"""RainNet (Ling et al., "Region-aware Adaptive Instance Normalization for Image
Harmonization", CVPR 2021), numerically equal to the official ``junleen/RainNet`` generator.

A pix2pix UNet with 8 stride-2 stages whose decoder normalises with RAIN: the foreground
features are re-normalised to the mean / std of the background features (both measured inside
their own mask region), each region with its own learned affine. Given as stages so CharmNet's
domain adapters can split it (``charmnet_rainnet``, ``charmnet_rainnet_shared``):

- ``encoder[i]``, ``i < 7``: conv k4/s2 -> [InstanceNorm] -> LeakyReLU(0.2). The official code
  applies the LeakyReLU in place at the start of the *next* stage, so the tensor it later
  concatenates as the skip carries the activated features; returning the activated features
  from the stage gives exactly that.
- ``encoder[7]``: conv k4/s2 (the innermost down-sampling, 1/256 of the input).
- ``decoder[j]``, ``j < 7``: ReLU -> deconv k4/s2 -> RAIN(mask) -> [Dropout(0.5)], then
  ``cat([skip, x])`` with ``encoder[6 - j]``'s output, then (``j >= 4``) the attention gate
  ``sigmoid(conv1x1(y)) * y``.
- ``decoder[7]``: ReLU -> deconv k4/s2 (to ``output_nc`` channels); ``head``: tanh.

Inputs: ``(B, 3, H, W)`` in [0, 1] is mapped to [-1, 1] (the official ``Normalize(0.5, 0.5)``);
with ``input_nc=4`` the mask is concatenated to the network input as the official option does.
The mask always reaches RAIN. H and W must be multiples of 256 (at least 256).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import register_single_network_layout, rename_by_table
from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, StageBackbone, StageOutput
from harmonykit.models.charmnet import make_charmnet_entrypoints
from harmonykit.models.layers import init_weights
from harmonykit.registry import BACKBONES

__all__ = [
    "RAIN",
    "RainEncoderStage",
    "RainDecoderStage",
    "RainNetBackbone",
    "rainnet",
    "official_rainnet_to_ours",
    "ours_to_official_rainnet",
    "is_official_rainnet",
    "infer_rainnet_args",
]

DEPTH = 8


class RAIN(nn.Module):
    """Region-aware adaptive instance normalisation.

    Both regions are normalised with the background's statistics: the background with its own
    mean / std, the foreground first with its own and then re-scaled to the background's. Each
    region has a learned affine ``(1 + gamma, beta)`` (zero-initialised, so it starts as the
    identity affine). Statistics are masked sums over H, W divided by ``count + eps``.

    Args:
        num_features: channels C.
        eps: added to the region's pixel count and to the variance.

    Forward: ``x (B, C, h, w)``, ``mask (B, 1, H, W)`` in [0, 1] (resized to ``h, w`` by
    nearest neighbour, no gradient) -> ``(B, C, h, w)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.foreground_gamma = nn.Parameter(torch.zeros(num_features))
        self.foreground_beta = nn.Parameter(torch.zeros(num_features))
        self.background_gamma = nn.Parameter(torch.zeros(num_features))
        self.background_beta = nn.Parameter(torch.zeros(num_features))

    def region_stats(self, region: torch.Tensor, weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(B, C, 1, 1)`` of ``region = x * weight`` over the pixels of ``weight``."""
        count = weight.sum(dim=(2, 3)) + self.eps
        mean = (region.sum(dim=(2, 3)) / count)[:, :, None, None]
        centred = region + (1 - weight) * mean - mean  # x - mean inside the region, 0 outside
        var = (centred**2).sum(dim=(2, 3)) / count
        return mean, torch.sqrt(var[:, :, None, None] + self.eps)

    @staticmethod
    def _affine(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return x * (1 + gamma[None, :, None, None]) + beta[None, :, None, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fg = F.interpolate(mask.detach().to(x.dtype), size=x.shape[2:], mode="nearest")
        bg = 1 - fg
        mean_bg, std_bg = self.region_stats(x * bg, bg)
        out_bg = self._affine((x - mean_bg) / std_bg, self.background_gamma, self.background_beta) * bg
        mean_fg, std_fg = self.region_stats(x * fg, fg)
        to_bg = (x - mean_fg) / std_fg * std_bg + mean_bg
        out_fg = self._affine(to_bg, self.foreground_gamma, self.foreground_beta) * fg
        return out_fg + out_bg

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class RainEncoderStage(nn.Module):
    """conv k4/s2 (no bias) -> [InstanceNorm, no affine] -> [LeakyReLU(0.2)].

    Forward: ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``; the mask is not used.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True, activation: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.norm = nn.InstanceNorm2d(out_channels, affine=False, track_running_stats=False) if norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class RainDecoderStage(nn.Module):
    """ReLU -> deconv k4/s2 -> [RAIN(mask)] -> [Dropout(0.5)] -> cat([skip, x]) -> [attention gate].

    Args:
        in_channels / out_channels: of the deconvolution.
        skip_channels: channels of the concatenated encoder feature (0: no skip, the output stage).
        rain: normalise with :class:`RAIN`.
        dropout: Dropout(0.5) before the concatenation (active in train mode only).
        attention: gate the merged tensor with ``sigmoid(conv1x1(y))``.
        bias: bias of the deconvolution (only the official output layer has one).

    Forward: ``x (B, C_in, h, w)``, ``mask (B, 1, H, W)``, ``skip (B, C_skip, 2h, 2w)`` ->
    ``(merged (B, C_skip + C_out, 2h, 2w), decoder half before the merge (B, C_out, 2h, 2w))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        skip_channels: int = 0,
        rain: bool = True,
        dropout: bool = False,
        attention: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        self.norm = RAIN(out_channels) if rain else None
        self.dropout = nn.Dropout(0.5) if dropout else None
        merged = skip_channels + out_channels
        self.attention = nn.Conv2d(merged, merged, kernel_size=1) if attention else None
        self.skip_channels = skip_channels

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, skip: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.deconv(F.relu(x))
        if self.norm is not None:
            y = self.norm(y, mask)
        if self.dropout is not None:
            y = self.dropout(y)
        if skip is None:
            return y, y
        merged = torch.cat([skip, y], dim=1)
        if self.attention is not None:
            merged = torch.sigmoid(self.attention(merged)) * merged
        return merged, y


@BACKBONES.register("rainnet")
class RainNetBackbone(StageBackbone):
    """The RainNet generator (official ``RainNet(input_nc, output_nc, ngf, norm_layer=RAIN,
    use_dropout, use_attention=True)``).

    Args:
        input_nc: 3 (composite only, the official configuration) or 4 (composite + mask).
        output_nc: output channels (3).
        ngf: width of the first stage; stages have ``ngf * (1, 2, 4, 8, 8, 8, 8, 8)`` channels.
        use_dropout: Dropout(0.5) in the three decoder stages after the innermost one (the
            official train and test configurations use it: ``no_dropout=False``).
        use_attention: the attention gates after the last three skip concatenations.
        init: ``"normal"`` (pix2pix N(0, 0.02), as the official ``init_net``) or ``"torch"``.

    Forward: ``model(composite, mask)`` with composite ``(B, 3, H, W)`` in [0, 1] and mask
    ``(B, 1, H, W)`` in [0, 1]; H, W multiples of 256. ``.image_normalized`` is the official
    tanh output in [-1, 1], ``.image`` the same mapped to [0, 1] (``(y + 1) / 2``).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        use_dropout: bool = True,
        use_attention: bool = True,
        init: str = "normal",
    ) -> None:
        super().__init__()
        if input_nc not in (3, 4):
            raise ValueError(f"input_nc must be 3 (composite) or 4 (composite + mask), got {input_nc}")
        if ngf < 1:
            raise ValueError(f"ngf must be positive, got {ngf}")
        self.input_nc, self.output_nc, self.ngf = input_nc, output_nc, ngf
        self.init_scheme = init
        enc_ch = [ngf * m for m in (1, 2, 4, 8, 8, 8, 8, 8)]
        self.encoder_channels = enc_ch
        self.encoder = nn.ModuleList()
        prev = input_nc
        for i, c in enumerate(enc_ch):
            self.encoder.append(RainEncoderStage(prev, c, norm=0 < i < DEPTH - 1, activation=i < DEPTH - 1))
            prev = c
        self.decoder = nn.ModuleList()
        for j in range(DEPTH - 1):
            skip = enc_ch[DEPTH - 2 - j]
            cin = enc_ch[-1] if j == 0 else 2 * enc_ch[DEPTH - 1 - j]
            self.decoder.append(
                RainDecoderStage(
                    cin, skip, skip_channels=skip, rain=True, dropout=use_dropout and 1 <= j <= 3,
                    attention=use_attention and j >= 4,
                )
            )
        self.decoder.append(RainDecoderStage(2 * enc_ch[0], output_nc, rain=False, bias=True))
        self.head = nn.Tanh()
        self.feature_info = [FeatureInfo(c, 2 ** (i + 1), f"encoder.{i}") for i, c in enumerate(enc_ch)]
        self.size_divisor = 2**DEPTH
        self.min_size = 2**DEPTH
        init_weights(self, init)

    # -- stage protocol --------------------------------------------------------------------
    def stage_config(self) -> Dict[str, Any]:
        return {"input_nc": self.input_nc}

    @classmethod
    def run_stages(cls, config, encoder, decoder, head, composite, mask, split_depth=None) -> StageOutput:
        """Map to [-1, 1], run the UNet (mask into every RAIN), tanh; ``image = (y + 1) / 2``.

        ``features_out`` is the decoder half of the last shared stage's merge (before the
        concatenation with ``features_in``, so both have the same shape).
        """
        mask = mask.to(composite.dtype)
        x = (composite - 0.5) / 0.5  # the official Normalize((0.5,) * 3, (0.5,) * 3)
        if config["input_nc"] == 4:
            x = torch.cat([x, mask], dim=1)
        feats: List[torch.Tensor] = []
        for stage in encoder:
            x = stage(x)
            feats.append(x)
        n = len(decoder)
        g = None
        for j, stage in enumerate(decoder):
            skip = feats[n - 2 - j] if j < n - 1 else None
            x, own = stage(x, mask, skip)
            if split_depth and j == n - split_depth - 1:
                g = own
        out = head(x)
        f = feats[split_depth - 1] if split_depth else None
        return StageOutput(image=(out + 1) / 2, image_normalized=out, features_in=f, features_out=g)

    @staticmethod
    def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Official RainNet keys -> ours; any other layout is returned unchanged."""
        return official_rainnet_to_ours(state_dict) if is_official_rainnet(state_dict) else dict(state_dict)


# -- official checkpoint layout ----------------------------------------------------------------
# Official names: model_layer0 (conv), model_layer{1,2,3}.1 (conv after the in-place LeakyReLU),
# unet_block[.submodule]*{down.1, up.1, up.3, upnorm} (the nested pix2pix blocks, outermost
# first), model_layer{11,12,13}.1 / ...norm / ...att.0, model_out.1.

_RAIN_PARAMS = ("foreground_gamma", "foreground_beta", "background_gamma", "background_beta")


def _official_names() -> Dict[str, str]:
    """Our name -> official name for every parameter, in the official ``state_dict()`` order
    (the official network has no buffers)."""
    names: Dict[str, str] = {"encoder.0.conv.weight": "model_layer0.weight"}
    for i in (1, 2, 3):
        names[f"encoder.{i}.conv.weight"] = f"model_layer{i}.1.weight"
    block = ["unet_block" + ".submodule" * n for n in range(4)]  # outermost (decoder 3) ... innermost (decoder 0)
    for n in range(3):
        names[f"encoder.{4 + n}.conv.weight"] = f"{block[n]}.down.1.weight"
    names["encoder.7.conv.weight"] = f"{block[3]}.up.1.weight"
    for j in range(4):  # the official order registers the innermost block's parameters first
        b = block[3 - j]
        names[f"decoder.{j}.deconv.weight"] = f"{b}.up.3.weight" if j == 0 else f"{b}.up.1.weight"
        for p in _RAIN_PARAMS:
            names[f"decoder.{j}.norm.{p}"] = f"{b}.upnorm.{p}"
    for j, layer in zip((4, 5, 6), (11, 12, 13)):
        names[f"decoder.{j}.deconv.weight"] = f"model_layer{layer}.1.weight"
        for p in _RAIN_PARAMS:
            names[f"decoder.{j}.norm.{p}"] = f"model_layer{layer}norm.{p}"
        names[f"decoder.{j}.attention.weight"] = f"model_layer{layer}att.0.weight"
        names[f"decoder.{j}.attention.bias"] = f"model_layer{layer}att.0.bias"
    names["decoder.7.deconv.weight"] = "model_out.1.weight"
    names["decoder.7.deconv.bias"] = "model_out.1.bias"
    return names


_TO_OFFICIAL = _official_names()
_FROM_OFFICIAL = {v: k for k, v in _TO_OFFICIAL.items()}


def is_official_rainnet(sd: Mapping[str, Any]) -> bool:
    """True when the keys are the official RainNet generator's (``model_layer0.weight``, ...)."""
    return any(k == "model_layer0.weight" or k.startswith("unet_block.") for k in sd)


def official_rainnet_to_ours(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official ``junleen/RainNet`` generator names -> ours (values untouched). Without the
    attention gates (``use_attention=False``) the ``model_layer*att`` keys are simply absent."""
    sd = {re.sub(r"^module\.", "", k): v for k, v in sd.items()}
    return rename_by_table(sd, _FROM_OFFICIAL, "an official RainNet generator state dict")


def ours_to_official_rainnet(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our ``rainnet`` names -> the official generator names, in the official key order."""
    return rename_by_table(sd, _TO_OFFICIAL, "a harmonykit rainnet state dict")


def infer_rainnet_args(sd: Mapping[str, torch.Tensor]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``("rainnet", model_args)`` from the shapes of an official (or our single-network)
    RainNet state dict; ``None`` for any other layout. Dropout leaves no weights: the official
    setting (on) is kept."""
    if is_official_rainnet(sd):
        sd = official_rainnet_to_ours(sd)
    elif not ("encoder.0.conv.weight" in sd and any(k.endswith(".norm.foreground_gamma") for k in sd)):
        return None
    first, last = sd["encoder.0.conv.weight"], sd["decoder.7.deconv.weight"]
    args = dict(ngf=int(first.shape[0]), input_nc=int(first.shape[1]), output_nc=int(last.shape[1]))
    args["use_attention"] = "decoder.4.attention.weight" in sd
    return "rainnet", args


register_single_network_layout(
    "official_rainnet", detect=lambda keys: is_official_rainnet(dict.fromkeys(keys)), to_ours=official_rainnet_to_ours,
    infer=infer_rainnet_args,
)


# -- registered entrypoints ------------------------------------------------------------------

_RAINNET = dict(backbone="rainnet", input_nc=3, output_nc=3, ngf=64, use_dropout=True, use_attention=True, init="normal")
_TINY = dict(ngf=4)
_PAPER = dict(
    paper_ids="arXiv:2106.02853",
    paper_name="Region-aware Adaptive Instance Normalization for Image Harmonization",
)

default_cfgs = {
    "rainnet": PretrainedCfg(
        **_PAPER,
        input_size=(3, 256, 256),
        size_divisor=256,
        min_size=256,
        value_range=(0.0, 1.0),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        origin_url="https://github.com/junleen/RainNet",
        license="MIT (official code)",
        tiny_args=_TINY,
        notes="official weights (net_G_last.pth, Google Drive / Baidu) load through checkpoint_path=",
    ),
}
register_pretrained_cfgs(default_cfgs)


@register_model
def rainnet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """RainNet generator (official configuration: input_nc=3, ngf=64, dropout): 54,759,043 parameters."""
    return build_model("rainnet", _RAINNET, kwargs, pretrained=pretrained)


_ENTRIES = make_charmnet_entrypoints(
    "rainnet", _RAINNET, dict(_TINY), cfg=PretrainedCfg(size_divisor=256, min_size=256, mean=(0.5,) * 3, std=(0.5,) * 3)
)
charmnet_rainnet = _ENTRIES["charmnet_rainnet"]
charmnet_rainnet_shared = _ENTRIES["charmnet_rainnet_shared"]
__all__ += list(_ENTRIES)
