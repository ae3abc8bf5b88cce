"""DoveNet (Cong et al., "DoveNet: Deep Image Harmonization via Domain Verification", CVPR 2020),
numerically equal to the official ``--netG s2ad`` generator (bcmi/Image-Harmonization-Dataset-iHarmony4,
folder ``DoveNet/``), with its training discriminators.

Generator: the pix2pix ``UnetGenerator`` with ``num_downs=8`` whose three outer skip merges are
gated by a 1x1-conv + sigmoid attention (``a = sigmoid(conv([skip, up])); out = a * [skip, up]``).
It is exposed through the stage protocol (:class:`~harmonykit.models.base.StageBackbone`):

- ``encoder[0]``: conv k4/s2 -> LeakyReLU(0.2);
  ``encoder[i]`` (``1 <= i < 7``): conv k4/s2 -> norm -> LeakyReLU(0.2); ``encoder[7]``: conv k4/s2.
  Each stage ends with the *next* level's LeakyReLU, so a stage output is exactly what the official
  code feeds both downwards and into the skip: pix2pix applies ``LeakyReLU(0.2, inplace=True)`` to
  the block input, so the skip half of every concatenation carries the activated features.
- ``decoder[0]``: ReLU -> deconv k4/s2 -> norm (innermost level);
  ``decoder[j]`` (``j >= 1``): merge (``cat([skip, x])`` with ``skip = encoder[7 - j]`` output, then
  the level's attention gate for the three outer levels) -> ReLU -> deconv -> norm [-> Dropout(0.5)
  on the three ``ngf*8`` levels]; ``decoder[7]`` has no norm (deconv with bias, to 3 channels).
- ``head``: Tanh.

A decoder stage merges its skip at its *input*, so every stage output has the width and stride of
the encoder feature it is merged with next: ``features_in`` (``encoder[k-1]``) and ``features_out``
(``decoder[7-k]``, the last shared stage when split at ``k``) have the same shape, as CharmNet's
heads need.

Input conventions (inside the model): the composite is mapped to [-1, 1] (``(x - 0.5) / 0.5``)
and the mask (0/1, foreground = 1) is concatenated as the 4th channel; the network outputs Tanh
values in [-1, 1] (``.image_normalized``); ``.image = (out + 1) / 2``.

Evaluation note: the official ``test.py`` runs the generator in train mode (no ``--eval``: batch
statistics and live dropout). ``model.train()`` reproduces it; ``model.eval()`` is the
deterministic alternative.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import CheckpointError, register_single_network_layout
from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, StageBackbone, StageOutput
from harmonykit.models.charmnet import make_charmnet_entrypoints
from harmonykit.models.layers import init_weights
from harmonykit.registry import BACKBONES, DISCRIMINATORS

__all__ = [
    "DoveNetBackbone",
    "DoveEncoderStage",
    "DoveDecoderStage",
    "SkipAttention",
    "PartialConv2d",
    "DoveNetGlobalDiscriminator",
    "DoveNetVerificationDiscriminator",
    "DoveNetDiscriminator",
    "DoveNetScores",
    "dovenet",
    "official_dovenet_to_unet",
    "unet_to_official_dovenet",
    "official_discriminator_to_ours",
    "ours_to_official_discriminator",
    "is_official_dovenet",
    "infer_dovenet_args",
    "NORM_TYPES",
]

NORM_TYPES = ("batch", "instance", "none")


def _norm(norm: str, channels: int) -> nn.Module:
    """pix2pix ``get_norm_layer``: BatchNorm2d (affine, running stats), InstanceNorm2d (no
    affine, no stats) or nothing."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORM_TYPES}, got {norm!r}")


def _conv_bias(norm: str) -> bool:
    """pix2pix gives convs a bias only with InstanceNorm (also none with ``norm='none'``)."""
    return norm == "instance"


# --------------------------------------------------------------------------------------
# generator stages
# --------------------------------------------------------------------------------------
class DoveEncoderStage(nn.Module):
    """Conv2d(k=4, s=2, p=1) -> [norm] -> [LeakyReLU(0.2)]: ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none", bias: bool = False, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        self.norm = _norm(norm, out_channels)
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SkipAttention(nn.Module):
    """DoveNet's skip gate: ``x * sigmoid(conv1x1(x))`` on the concatenated ``(B, C, h, w)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x)) * x


class DoveDecoderStage(nn.Module):
    """[merge ``cat([skip, x])`` -> attention] -> ReLU -> ConvTranspose2d(k=4, s=2, p=1) -> [norm]
    -> [Dropout(0.5)]: doubles H and W.

    Args:
        in_channels: channels entering the ReLU (after the merge, if any).
        out_channels: channels of the deconvolution.
        attention: gate the merged features (``in_channels`` wide) with :class:`SkipAttention`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str = "none",
        bias: bool = False,
        attention: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.attention = SkipAttention(in_channels) if attention else None
        self.act = nn.ReLU()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        self.norm = _norm(norm, out_channels)
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is not None:
            x = torch.cat([skip, x], dim=1)
            if self.attention is not None:
                x = self.attention(x)
        return self.dropout(self.norm(self.deconv(self.act(x))))


@BACKBONES.register("dovenet")
class DoveNetBackbone(StageBackbone):
    """DoveNet's attention UNet (official ``define_G(4, 3, ngf, 's2ad', norm, use_dropout)``).

    Args:
        ngf: channels of the outermost level (official name); levels have
            ``ngf * min(2**i, 8)`` channels.
        norm: ``"batch"`` (released checkpoint, 54,759,939 parameters at ``ngf=64``),
            ``"instance"`` (the official train script, 54,755,587) or ``"none"``.
        use_dropout: Dropout(0.5) on the three inner ``ngf*8`` decoder levels (official default:
            on, since ``--no_dropout`` is not given).
        num_downs: number of levels (official ``s2ad``: 8); inputs must be multiples of
            ``2**num_downs``.
        use_attention: the skip gates of the three outer levels (``False``: pix2pix ``unet_256``).
        in_channels: 4 (RGB + mask). out_channels: 3.
        init: weight init (``"normal"``: pix2pix N(0, 0.02), as the official ``init_net``).

    Forward: composite ``(B, 3, H, W)`` in [0, 1], mask ``(B, 1, H, W)`` in [0, 1]; H and W
    multiples of ``2**num_downs`` (256). ``.image`` in [0, 1] up to the Tanh range,
    ``.image_normalized`` in [-1, 1].
    """

    def __init__(
        self,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
        num_downs: int = 8,
        use_attention: bool = True,
        in_channels: int = 4,
        out_channels: int = 3,
        init: str = "normal",
    ) -> None:
        super().__init__()
        if norm not in NORM_TYPES:
            raise ValueError(f"norm must be one of {NORM_TYPES}, got {norm!r}")
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5 (the official UNet's fixed levels), got {num_downs}")
        if ngf < 1:
            raise ValueError(f"ngf must be positive, got {ngf}")
        self.ngf, self.norm, self.use_dropout = ngf, norm, use_dropout
        self.num_downs, self.use_attention, self.init_scheme = num_downs, use_attention, init
        n, bias = num_downs, _conv_bias(norm)
        enc_ch = [ngf * min(2**i, 8) for i in range(n)]
        self.encoder_channels = enc_ch
        self.encoder = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(enc_ch):
            stage_norm = norm if 0 < i < n - 1 else "none"
            self.encoder.append(DoveEncoderStage(prev, c, norm=stage_norm, bias=bias, act=i < n - 1))
            prev = c
        self.decoder = nn.ModuleList()
        self.decoder.append(DoveDecoderStage(enc_ch[n - 1], enc_ch[n - 2], norm=norm, bias=bias))
        for j in range(1, n):
            level = n - 1 - j  # the level whose up-convolution this stage runs
            merged = 2 * enc_ch[level]  # cat([encoder[level] output, previous stage output])
            outermost = level == 0
            self.decoder.append(
                DoveDecoderStage(
                    merged,
                    out_channels if outermost else enc_ch[level - 1],
                    norm="none" if outermost else norm,
                    bias=True if outermost else bias,
                    attention=use_attention and 1 <= level + 1 <= 3,
                    dropout=use_dropout and 4 <= level <= n - 2,
                )
            )
        self.head = nn.Tanh()
        self.feature_info = [FeatureInfo(c, 2 ** (i + 1), f"encoder.{i}") for i, c in enumerate(enc_ch)]
        self.size_divisor = 2**n
        self.min_size = 2**n
        init_weights(self, init)

    # -- stage protocol --------------------------------------------------------------------
    def stage_config(self) -> Dict[str, Any]:
        return {"num_downs": self.num_downs}

    @classmethod
    def run_stages(cls, config, encoder, decoder, head, composite, mask, split_depth=None) -> StageOutput:
        """Map to the official input, run the UNet, map the Tanh output back to [0, 1]."""
        x = torch.cat([(composite - 0.5) / 0.5, mask.to(composite.dtype)], dim=1)
        out, f, g = cls._unet(encoder, decoder, head, x, split_depth)
        return StageOutput(image=(out + 1.0) / 2.0, image_normalized=out, features_in=f, features_out=g)

    @staticmethod
    def _unet(encoder, decoder, head, x: torch.Tensor, split_depth: Optional[int] = None):
        n = len(encoder)
        feats: List[torch.Tensor] = []
        for stage in encoder:
            x = stage(x)
            feats.append(x)
        f = feats[split_depth - 1] if split_depth else None
        g = None
        for j, stage in enumerate(decoder):
            x = stage(x, feats[n - 1 - j] if j > 0 else None)
            if split_depth and j == n - split_depth - 1:
                g = x
        return head(x), f, g

    def forward_official(self, inputs: torch.Tensor) -> torch.Tensor:
        """The official call ``netG(inputs)``: ``(B, 4, H, W)`` = [composite in [-1, 1], mask]
        -> ``(B, 3, H, W)`` Tanh output in [-1, 1]."""
        return self._unet(self.encoder, self.decoder, self.head, inputs)[0]


# --------------------------------------------------------------------------------------
# official checkpoint layout (pix2pix nested UnetSkipConnectionBlock names)
# --------------------------------------------------------------------------------------
def _level_prefix(level: int) -> str:
    """Module path of the official ``UnetSkipConnectionBlock`` at ``level`` (0 = outermost)."""
    return "model." if level == 0 else "model.model.1." + "model.3." * (level - 1)


def _official_module_map(num_downs: int, use_attention: bool) -> Dict[str, str]:
    """Official module path -> ours, for a generator with ``num_downs`` levels."""
    n = num_downs
    m = {_level_prefix(0) + "model.0": "encoder.0.conv", _level_prefix(0) + "model.3": f"decoder.{n - 1}.deconv"}
    for level in range(1, n):
        p = _level_prefix(level) + "model."
        m[p + "1"] = f"encoder.{level}.conv"
        if level < n - 1:
            m[p + "2"] = f"encoder.{level}.norm"
            m[p + "5"] = f"decoder.{n - 1 - level}.deconv"
            m[p + "6"] = f"decoder.{n - 1 - level}.norm"
        else:
            m[p + "3"] = "decoder.0.deconv"
            m[p + "4"] = "decoder.0.norm"
        if use_attention and level <= 3:
            m[_level_prefix(level) + "attention.0"] = f"decoder.{n - level}.attention.conv"
    return m


def is_official_dovenet(keys) -> bool:
    """True for an official DoveNet / pix2pix UNet generator state dict (``model.model.0.weight``)."""
    return any(k.startswith("model.model.0.") for k in keys)


def _official_geometry(keys) -> Tuple[int, bool]:
    """(num_downs, use_attention) of an official generator state dict, from its key names."""
    keys = list(keys)

    def has_block(level: int) -> bool:  # a key inside the block (not the parent's leaf "model.3.weight")
        p = _level_prefix(level)
        return any(k.startswith(p) and "." in k[len(p):] for k in keys)

    levels = [lvl for lvl in range(1, 16) if has_block(lvl)]
    if not levels or levels != list(range(1, len(levels) + 1)):
        raise CheckpointError(f"not an official DoveNet UNet state dict (keys like {keys[:3]})")
    return len(levels) + 1, any(".attention.0." in k for k in keys)


def official_dovenet_to_unet(
    sd: Mapping[str, torch.Tensor], num_downs: Optional[int] = None, use_attention: Optional[bool] = None
) -> Dict[str, torch.Tensor]:
    """Official ``latest_net_G.pth`` names -> our ``encoder.i`` / ``decoder.j`` names (values untouched).

    ``num_downs`` / ``use_attention`` are read from the keys unless given (give them to rename
    a partial dict, e.g. buffers only).

    Raises :class:`~harmonykit.convert.CheckpointError` naming the first key that has no place
    in the DoveNet generator.
    """
    if num_downs is None or use_attention is None:
        n, att = _official_geometry(sd.keys())
        num_downs = n if num_downs is None else num_downs
        use_attention = att if use_attention is None else use_attention
    table = _official_module_map(num_downs, use_attention)
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        mod, _, leaf = k.rpartition(".")
        if mod not in table:
            raise CheckpointError(f"unexpected key {k!r} in an official DoveNet generator state dict")
        out[f"{table[mod]}.{leaf}"] = v
    return out


def unet_to_official_dovenet(
    sd: Mapping[str, torch.Tensor], num_downs: int = 8, use_attention: bool = True
) -> Dict[str, torch.Tensor]:
    """Our DoveNet names -> the official nested names."""
    inv = {v: k for k, v in _official_module_map(num_downs, use_attention).items()}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        mod, _, leaf = k.rpartition(".")
        if mod not in inv:
            raise CheckpointError(f"unexpected key {k!r} in a harmonykit DoveNet state dict")
        out[f"{inv[mod]}.{leaf}"] = v
    return out


def infer_dovenet_args(sd: Mapping[str, torch.Tensor]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``("dovenet", model_args)`` for an official DoveNet generator state dict, else ``None``."""
    if not is_official_dovenet(sd.keys()):
        return None
    num_downs, att = _official_geometry(sd.keys())
    ours = official_dovenet_to_unet(sd)
    ngf = int(ours["encoder.0.conv.weight"].shape[0])
    if any(k.endswith("running_mean") for k in ours):
        norm = "batch"
    elif "encoder.1.conv.bias" in ours:
        norm = "instance"
    else:
        norm = "none"
    args: Dict[str, Any] = dict(ngf=ngf, norm=norm)
    if num_downs != 8:
        args["num_downs"] = num_downs
    if not att:
        args["use_attention"] = False
    return "dovenet", args


# --------------------------------------------------------------------------------------
# discriminators (official dovenet_model.NLayerDiscriminator / OrgDiscriminator)
# --------------------------------------------------------------------------------------
class PartialConv2d(nn.Conv2d):
    """The official partial convolution (NVIDIA's, single-channel mask).

    ``forward(x, mask)`` with ``mask (B, 1, H, W)``: ``u = conv(mask, ones_kxk)``,
    ``ratio = k*k / (u + 1e-8) * clamp(u, 0, 1)``, ``raw = conv(x * mask)``; with a bias
    ``out = ((raw - b) * ratio + b) * clamp(u, 0, 1)``, without ``out = raw * ratio``.
    Returns ``(out, clamp(u, 0, 1))``. Without a mask it is a plain convolution (the official
    all-ones mask gives ``ratio = 9 / (9 + 1e-8) = 1`` in float32).
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if mask is None:
            return self._conv_forward(x, self.weight, self.bias), None
        with torch.no_grad():
            ones = torch.ones(1, 1, *self.kernel_size, dtype=x.dtype, device=x.device)
            update = F.conv2d(mask.to(x.dtype), ones, None, self.stride, self.padding, self.dilation)
            ratio = (self.kernel_size[0] * self.kernel_size[1]) / (update + 1e-8)
            update = update.clamp(0, 1)
            ratio = ratio * update
        raw = self._conv_forward(x * mask, self.weight, self.bias)
        if self.bias is None:
            return raw * ratio, update
        b = self.bias.view(1, -1, 1, 1)
        return ((raw - b) * ratio + b) * update, update


def _sn(conv: nn.Module) -> nn.Module:
    """Spectral normalisation as the official code (``torch.nn.utils.spectral_norm``: keys
    ``weight_orig`` / ``weight_u`` / ``weight_v``, one power iteration per training forward)."""
    return nn.utils.spectral_norm(conv)


class _DoveConvTower(nn.Module):
    """Seven spectral-normalised 3x3 partial convs (stride 2, 2, 2, 2, 2, 2, 1; no padding)
    with norms after convs 2..6 and LeakyReLU(0.2) after convs 1..6.

    Widths ``ndf * min(2**i, 8)`` for conv ``i + 1``; conv 7 has ``ndf * min(2**n_layers, 8)``.
    ``(B, C, H, W)`` (H, W >= 255) -> ``(B, ndf*8, h, w)``.
    """

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: str) -> None:
        super().__init__()
        bias = _conv_bias(norm)
        widths = [ndf * min(2**i, 8) for i in range(6)] + [ndf * min(2**n_layers, 8)]
        prev = in_channels
        for i, w in enumerate(widths):
            stride = 1 if i == 6 else 2
            conv = PartialConv2d(prev, w, kernel_size=3, stride=stride, padding=0, bias=True if i == 0 else bias)
            setattr(self, f"conv{i + 1}", _sn(conv))
            if 1 <= i <= 5:
                setattr(self, f"norm{i + 1}", _norm(norm, w))
            prev = w
        self.act = nn.LeakyReLU(0.2)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        for i in range(1, 8):
            x, mask = getattr(self, f"conv{i}")(x, mask)
            if i < 7:
                if i >= 2:
                    x = getattr(self, f"norm{i}")(x)
                x = self.act(x)
        return x


@DISCRIMINATORS.register("dovenet_global")
class DoveNetGlobalDiscriminator(nn.Module):
    """DoveNet's global discriminator: is the whole image real? ``(B, 3, H, W)`` in [-1, 1]
    (H, W >= 255) -> score map ``(B, 1, h, w)`` (1x1 at 256 px).

    Args:
        in_channels: 3. ndf: width of the first conv (official 64). n_layers: official
            ``n_layers_D`` (3); sets the last conv's width. norm: ``"instance"`` (official train
            script) or ``"batch"``. init: ``"normal"`` (official ``init_net``).
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance", init: str = "normal"
    ) -> None:
        super().__init__()
        self.tower = _DoveConvTower(in_channels, ndf, n_layers, norm)
        self.head = nn.Conv2d(self.tower.out_channels, 1, kernel_size=1)
        init_weights(self, init)

    def forward(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``mask`` is accepted for a uniform call and ignored (the global branch sees the whole image)."""
        return self.head(self.tower(image))


@DISCRIMINATORS.register("dovenet_verification")
class DoveNetVerificationDiscriminator(nn.Module):
    """DoveNet's domain-verification discriminator: do foreground and background share a domain?

    One partial-conv tower encodes the foreground (mask ``m``) and the background (``1 - m``)
    separately; the score is ``conv(lrelu(conv_sn(lrelu(conv_sn(z_fg * z_bg)))))``.
    ``(image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W))`` -> ``(B, 1, h, w)``.
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance", init: str = "normal"
    ) -> None:
        super().__init__()
        self.tower = _DoveConvTower(in_channels, ndf, n_layers, norm)
        c = self.tower.out_channels
        self.sim1 = _sn(nn.Conv2d(c, c, kernel_size=1))
        self.sim2 = _sn(nn.Conv2d(c, c, kernel_size=1))
        self.sim3 = nn.Conv2d(c, 1, kernel_size=1)
        self.act = nn.LeakyReLU(0.2)
        init_weights(self, init)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(image.dtype)
        fg = self.tower(image, mask)  # the whole foreground pass runs before the background one,
        bg = self.tower(image, 1 - mask)  # as officially (order of spectral-norm power iterations)
        s = self.act(self.sim1(fg * bg))
        s = self.act(self.sim2(s))
        return self.sim3(s)


@dataclass
class DoveNetScores:
    """Scores of :class:`DoveNetDiscriminator`: ``global_score`` and ``verification_score``,
    each ``(B, 1, h, w)`` logits."""

    global_score: torch.Tensor
    verification_score: torch.Tensor


@DISCRIMINATORS.register("dovenet")
class DoveNetDiscriminator(nn.Module):
    """Both DoveNet discriminators, as the official ``NLayerDiscriminator`` holds them.

    ``forward(image, mask) -> DoveNetScores``; :meth:`penalty_score` is the official
    ``gp=True`` output ``(global + verification) / 2`` used by the gradient penalty.
    Parameters: 17,787,138 (``norm="instance"``) / 17,789,954 (``"batch"``) at ``ndf=64``.
    Official checkpoints (``latest_net_D.pth``) load with :meth:`load_official_state_dict`.
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance", init: str = "normal"
    ) -> None:
        super().__init__()
        self.global_d = DoveNetGlobalDiscriminator(in_channels, ndf, n_layers, norm, init)
        self.verification_d = DoveNetVerificationDiscriminator(in_channels, ndf, n_layers, norm, init)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> DoveNetScores:
        return DoveNetScores(self.global_d(image), self.verification_d(image, mask))

    def penalty_score(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self(image, mask)
        return (s.global_score + s.verification_score) * 0.5

    def load_official_state_dict(self, sd: Mapping[str, torch.Tensor], strict: bool = True):
        return self.load_state_dict(official_discriminator_to_ours(sd), strict=strict)


_D_TOWER = re.compile(r"^D\.(conv|norm)([1-7])(f?)\.(.+)$")
_D_HEAD = {
    "convg3": "global_d.head",
    "convl1": "verification_d.sim1",
    "convl2": "verification_d.sim2",
    "convl3": "verification_d.sim3",
}


def official_discriminator_to_ours(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official DoveNet ``NLayerDiscriminator`` names (``D.conv3f.weight_orig``, ``convl1.bias``)
    -> :class:`DoveNetDiscriminator` names (``verification_d.tower.conv3.weight_orig``)."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _D_TOWER.match(k)
        head, _, leaf = k.partition(".")
        if m:
            branch = "verification_d" if m.group(3) else "global_d"
            out[f"{branch}.tower.{m.group(1)}{m.group(2)}.{m.group(4)}"] = v
        elif head in _D_HEAD:
            out[f"{_D_HEAD[head]}.{leaf}"] = v
        else:
            raise CheckpointError(f"unexpected key {k!r} in an official DoveNet discriminator state dict")
    return out


def ours_to_official_discriminator(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`official_discriminator_to_ours`."""
    inv = {v: k for k, v in _D_HEAD.items()}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"^(global_d|verification_d)\.tower\.(conv|norm)(\d)\.(.+)$", k)
        if m:
            f = "f" if m.group(1) == "verification_d" else ""
            out[f"D.{m.group(2)}{m.group(3)}{f}.{m.group(4)}"] = v
            continue
        mod = next((p for p in inv if k.startswith(p + ".")), None)
        if mod is None:
            raise CheckpointError(f"unexpected key {k!r} in a harmonykit DoveNet discriminator state dict")
        out[inv[mod] + k[len(mod):]] = v
    return out


# --------------------------------------------------------------------------------------
# registered entrypoints
# --------------------------------------------------------------------------------------
_DOVENET = dict(backbone="dovenet", ngf=64, norm="batch", use_dropout=True, num_downs=8, use_attention=True, init="normal")
_TINY = dict(ngf=2)
_PAPER = dict(paper_ids="arXiv:1911.13239", paper_name="DoveNet: Deep Image Harmonization via Domain Verification")
_ORIGIN = "https://github.com/bcmi/Image-Harmonization-Dataset-iHarmony4/tree/master/DoveNet"
_BASE_CFG = PretrainedCfg(
    **_PAPER,
    input_size=(3, 256, 256),
    size_divisor=256,
    min_size=256,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    license="MIT (official code, bcmi/Image-Harmonization-Dataset-iHarmony4)",
    origin_url=_ORIGIN,
    tiny_args=_TINY,
    notes=(
        "official input: [(composite - 0.5) / 0.5, mask] (4 channels), output Tanh in [-1, 1]; "
        "released checkpoint latest_net_G.pth (norm=batch; Baidu Cloud / bcmi.cloud, see the origin README) "
        "loads with checkpoint_path=. Official test.py runs the generator in train mode "
        "(batch statistics, live dropout): train_mode_eval."
    ),
)

default_cfgs = {"dovenet": _BASE_CFG.replace(official_test_mode="train")}
register_pretrained_cfgs(default_cfgs)


@register_model
def dovenet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DoveNet generator (``--netG s2ad``, ``norm="batch"`` as the released checkpoint):
    54,759,939 parameters; ``norm="instance"``: 54,755,587."""
    return build_model("dovenet", _DOVENET, kwargs, pretrained=pretrained)


_ENTRIES = make_charmnet_entrypoints("dovenet", _DOVENET, _TINY, cfg=_BASE_CFG)
charmnet_dovenet = _ENTRIES["charmnet_dovenet"]
charmnet_dovenet_shared = _ENTRIES["charmnet_dovenet_shared"]
__all__ += ["charmnet_dovenet", "charmnet_dovenet_shared"]



register_single_network_layout(
    "official_dovenet", detect=lambda keys: is_official_dovenet(list(keys)), to_ours=official_dovenet_to_unet,
    infer=infer_dovenet_args,
)
