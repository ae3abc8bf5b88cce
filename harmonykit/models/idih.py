"""iDIH / DIH UNet backbone (Sofiiuk et al., "Foreground-aware Semantic Representations for
Image Harmonization", WACV 2021), numerically equal to the official ``improved_dih256``.

The network is exposed as ordered stages so that a domain adapter can split it at any depth:
``encoder[i]`` (conv k4/s2 -> [BN] -> ELU) for ``i < depth``, ``decoder[j]`` (deconv k4/s2 ->
BN -> ELU) for ``j < depth``, whose output is summed with ``encoder[skip_sources[j]]``
(additive skips), and ``head`` (blending layer).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from harmonykit.convert import CheckpointError, CheckpointLayout, register_layout, register_single_network_layout
from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, StageBackbone, StageOutput
from harmonykit.models.layers import BlendingHead, DecoderStage, EncoderStage, init_weights
from harmonykit.normalization import denormalize, normalize
from harmonykit.registry import BACKBONES

__all__ = ["UNetBackbone", "encoder_channels", "unet_forward", "valid_size_message", "idih256", "dih256", "idih512", "official_idih_to_unet", "unet_to_official_idih"]


def encoder_channels(depth: int, ch: int, max_channels: int) -> List[int]:
    """Output channels of each encoder stage: ``ch, ch``, then doubled at every even index
    (capped at ``max_channels``) and kept at every odd one."""
    out, c = [], ch
    for i in range(depth):
        if i >= 2 and i % 2 == 0:
            c = min(2 * c, max_channels)
        out.append(c)
    return out


def valid_size_message(depth: int, h: int, w: int) -> str:
    div, low = 2**depth, 2 ** (depth + 1)

    def up(v: int) -> int:
        return max(low, -(-v // div) * div)

    return (
        f"input size {h}x{w} (HxW) does not fit a depth-{depth} iDIH: height and width must be "
        f"multiples of {div} and at least {low} (e.g. {low}x{low}, {low + div}x{low}); the nearest larger "
        f"valid size is {up(h)}x{up(w)}. Resize or pad first, or use harmonykit.harmonize(), which "
        f"handles any size."
    )


def unet_forward(
    encoder: Sequence[nn.Module],
    decoder: Sequence[nn.Module],
    skip_sources: Sequence[Optional[int]],
    head: BlendingHead,
    image: torch.Tensor,
    mask: torch.Tensor,
    split_depth: Optional[int] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Run a UNet given as stage lists.

    Args:
        image: normalised composite ``(B, 3, H, W)``; mask ``(B, 1, H, W)`` in [0, 1].
        split_depth: k; when given, also return ``f`` (output of encoder stage k-1) and ``g``
            (output of decoder stage depth-k-1 after its skip, i.e. the shared stage's output).

    Returns:
        (output in normalised space, attention or None, f or None, g or None)
    """
    depth = len(encoder)
    x = torch.cat([image, mask.to(image.dtype)], dim=1)
    feats: List[torch.Tensor] = []
    for stage in encoder:
        x = stage(x)
        feats.append(x)
    f = feats[split_depth - 1] if split_depth else None
    g = None
    for j, stage in enumerate(decoder):
        x = stage(x)
        src = skip_sources[j]
        if src is not None:
            x = x + feats[src]
        if split_depth and j == depth - split_depth - 1:
            g = x
    out, attention = head(x, image)
    return out, attention, f, g


@BACKBONES.register("idih")
class UNetBackbone(StageBackbone):
    """The iDIH UNet (``image_fusion=True``) or DIH (``image_fusion=False``).

    Args:
        depth: number of encoder (and decoder) stages; 7 for 256 px models, 8 for 512.
        ch: channels of the first two encoder stages.
        max_channels: channel cap.
        batchnorm_from: first encoder stage with BatchNorm (the decoder always has it).
        image_fusion: blend the input with the predicted image through an attention map.
        in_channels: 4 (RGB + mask).
        init: weight init scheme (``"xavier_gluon"`` as Samsung, ``"normal"`` as CharmNet).

    Forward: ``model(composite, mask, domain=None)`` with composite ``(B, 3, H, W)`` in [0, 1]
    and mask ``(B, 1, H, W)`` in [0, 1]; H, W multiples of ``2**depth``, at least
    ``2**(depth+1)``. Returns :class:`HarmonizationOutput`.
    """

    def __init__(
        self,
        depth: int = 7,
        ch: int = 64,
        max_channels: int = 512,
        batchnorm_from: int = 2,
        image_fusion: bool = True,
        in_channels: int = 4,
        init: str = "xavier_gluon",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        if ch < 2 or max_channels < ch:
            raise ValueError(f"need 2 <= ch <= max_channels, got ch={ch}, max_channels={max_channels}")
        self.image_fusion = image_fusion
        self.init_scheme = init
        enc_ch = encoder_channels(depth, ch, max_channels)
        self.encoder_channels = enc_ch
        self.encoder = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(enc_ch):
            pad = 0 if i == depth - 1 else 1
            self.encoder.append(EncoderStage(prev, c, padding=pad, batchnorm=i >= batchnorm_from))
            prev = c
        self.decoder = nn.ModuleList()
        self.skip_sources: List[Optional[int]] = []
        self.decoder_channels: List[int] = []
        for j in range(depth):
            cin = enc_ch[depth - 1 - j]
            cout = enc_ch[depth - 2 - j] if j < depth - 1 else cin // 2
            self.decoder.append(DecoderStage(cin, cout, padding=0 if j == 0 else 1))
            self.skip_sources.append(depth - 2 - j if j < depth - 1 else None)
            self.decoder_channels.append(cout)
        self.head = BlendingHead(self.decoder_channels[-1], image_fusion=image_fusion)
        self.feature_info = [FeatureInfo(c, 2 ** (i + 1), f"encoder.{i}") for i, c in enumerate(enc_ch)]
        self.size_divisor = 2**depth
        self.min_size = 2 ** (depth + 1)
        init_weights(self, init)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` naming the valid sizes when ``height x width`` cannot be run."""
        div, low = self.size_divisor, self.min_size
        if height % div or width % div or height < low or width < low:
            raise ValueError(valid_size_message(self.depth, height, width))

    # -- stage protocol --------------------------------------------------------------------
    def stage_config(self) -> Dict[str, Any]:
        return {"skip_sources": list(self.skip_sources)}

    @classmethod
    def run_stages(cls, config, encoder, decoder, head, composite, mask, split_depth=None) -> StageOutput:
        """Normalise, run the UNet with additive skips, blend; ``image`` is denormalised."""
        image = normalize(composite)
        out, attention, f, g = unet_forward(encoder, decoder, config["skip_sources"], head, image, mask, split_depth)
        return StageOutput(image=denormalize(out), image_normalized=out, attention=attention, features_in=f, features_out=g)

    # -- official-space forward --------------------------------------------------------------
    def forward_normalized(
        self, image: torch.Tensor, mask: torch.Tensor, split_depth: Optional[int] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Official-space forward: normalised image in, normalised output out."""
        return unet_forward(self.encoder, self.decoder, self.skip_sources, self.head, image, mask, split_depth)


# -- official checkpoint layout (Samsung ``iharm``) ------------------------------------------
# ``encoder.block0.block.0.weight``, ``encoder.blocks_connected.block2.block.1.running_mean``,
# ``decoder.deconv_blocks.3.block.0.bias``, ``decoder.conv_attention.weight``,
# ``decoder.to_rgb.weight`` (92 entries for iDIH-256) <-> ours (``encoder.3.conv.weight``,
# ``decoder.0.norm.weight``, ``head.to_rgb.bias``).

_OFF_ENC = re.compile(r"^(?:blocks_connected\.)?block(\d+)\.block\.([01])\.(.+)$")
_OFF_DEC = re.compile(r"^deconv_blocks\.(\d+)\.block\.([01])\.(.+)$")
_OURS = re.compile(r"^(encoder|decoder)\.(\d+)\.(conv|norm)\.(.+)$")
_LAYER = {"0": "conv", "1": "norm", "conv": "0", "norm": "1"}


def _enc_off_to_unet(rest: str) -> Optional[str]:
    m = _OFF_ENC.match(rest)
    return f"encoder.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}" if m else None


def _dec_off_to_unet(rest: str, offset: int = 0) -> Optional[str]:
    m = _OFF_DEC.match(rest)
    return f"decoder.{int(m.group(1)) + offset}.{_LAYER[m.group(2)]}.{m.group(3)}" if m else None


def _head_off_to_unet(rest: str) -> Optional[str]:
    for name in ("conv_attention.", "to_rgb."):
        if rest.startswith(name):
            return "head." + rest
    return None


def official_idih_to_unet(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Samsung iDIH names -> our single-UNet names (values untouched)."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        new = None
        if k.startswith("encoder."):
            new = _enc_off_to_unet(k[len("encoder."):])
        elif k.startswith("decoder."):
            rest = k[len("decoder."):]
            new = _dec_off_to_unet(rest) or _head_off_to_unet(rest)
        if new is None:
            raise CheckpointError(f"unexpected key {k!r} in an official iDIH state dict")
        out[new] = v
    return out


def _unet_to_off_enc(i: int, layer: str, tail: str) -> str:
    blk = f"block{i}" if i < 2 else f"blocks_connected.block{i}"
    return f"{blk}.block.{_LAYER[layer]}.{tail}"


def unet_to_official_idih(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our single-UNet names -> Samsung iDIH names."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _OURS.match(k)
        if m:
            part, i, layer, tail = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            if part == "encoder":
                out["encoder." + _unet_to_off_enc(i, layer, tail)] = v
            else:
                out[f"decoder.deconv_blocks.{i}.block.{_LAYER[layer]}.{tail}"] = v
        elif k.startswith("head."):
            out["decoder." + k[len("head."):]] = v
        else:
            raise CheckpointError(f"unexpected key {k!r} in a harmonykit UNet state dict")
    return out


def infer_unet_args(sd: Mapping[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model_args)`` of a single-UNet state dict (our names) from its shapes."""
    enc = _stage_shapes(sd, r"^encoder\.(\d+)\.conv\.weight$")
    bn = [int(m.group(1)) for k in sd for m in [re.match(r"^encoder\.(\d+)\.norm\.weight$", k)] if m]
    fusion = "head.conv_attention.weight" in sd
    args = dict(depth=len(enc), ch=enc[0], max_channels=max(enc), batchnorm_from=min(bn) if bn else len(enc), image_fusion=fusion)
    arch = "idih256" if fusion else "dih256"
    if len(enc) == 8 and fusion:
        arch = "idih512"
    return arch, args


def _stage_shapes(sd: Mapping[str, torch.Tensor], pattern: str) -> List[int]:
    found = {int(m.group(1)): v.shape[0] for k, v in sd.items() for m in [re.match(pattern, k)] if m}
    return [found[i] for i in sorted(found)]


def _unet_to_model(model: nn.Module, sd: Dict[str, torch.Tensor], domain: Optional[str]):
    """A single-UNet state dict into ``model``: a split model takes it as one domain's branch
    plus the shared stages (how the official CharmNet code initialises its real branch)."""
    if hasattr(model, "from_single_network"):
        return model.from_single_network(sd, domain)
    return sd, []


register_single_network_layout(
    "official_idih",
    detect=lambda keys: any(k.startswith(("encoder.block0.", "encoder.blocks_connected.", "decoder.deconv_blocks.")) for k in keys),
    to_ours=official_idih_to_unet,
    infer=lambda sd: infer_unet_args(official_idih_to_unet(sd)),
    priority=10,
    ours="unet",
)
register_layout(
    CheckpointLayout(
        "unet",
        detect=lambda keys: any(re.match(r"(encoder|decoder)\.\d+\.", k) for k in keys),
        to_model=_unet_to_model,
        convert={"official_idih": lambda sd, **_: unet_to_official_idih(sd)},
        infer=infer_unet_args,
        priority=0,
    )
)


# -- registered entrypoints ------------------------------------------------------------------

_IDIH = dict(backbone="idih", depth=7, ch=64, max_channels=512, batchnorm_from=2, image_fusion=True, init="xavier_gluon")
_TINY = dict(ch=8, max_channels=16)
_PAPER = dict(paper_ids="arXiv:2006.00809", paper_name="Foreground-aware Semantic Representations for Image Harmonization")

default_cfgs = {
    "idih256": PretrainedCfg(**_PAPER, input_size=(3, 256, 256), tiny_args=_TINY),
    "dih256": PretrainedCfg(**_PAPER, input_size=(3, 256, 256), tiny_args=_TINY),
    "idih512": PretrainedCfg(**_PAPER, input_size=(3, 512, 512), tiny_args=_TINY),
    # Official release: the Samsung iDIH-256 weights, a GitHub release file in the official
    # layout; converted on load.
    "idih256.samsung_ihd4": PretrainedCfg(
        url="https://github.com/SamsungLabs/image_harmonization/releases/download/v1.0/idih256.pth",
        origin_url="https://github.com/SamsungLabs/image_harmonization",
        license="see the origin repository; trained on iHarmony4 (research use)",
        train_datasets=["HCOCO", "HAdobe5k", "HFlickr", "Hday2night"],
        metric_protocol="idih",
        metrics={"All": {"MSE": 30.70, "PSNR": 36.99}},
        notes="official checkpoint in the Samsung key layout; converted on load",
    ),
}
register_pretrained_cfgs(default_cfgs)


@register_model
def idih256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iDIH-256 (Samsung ``improved_dih256``): 8,301,284 parameters."""
    return build_model("idih256", _IDIH, kwargs, pretrained=pretrained)


@register_model
def dih256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DIH-256: BatchNorm in every encoder stage, no blending layer."""
    return build_model("dih256", dict(_IDIH, batchnorm_from=0, image_fusion=False), kwargs, pretrained=pretrained)


@register_model
def idih512(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iDIH-512 (Samsung ``improved_dih512``): depth 8, inputs multiples of 256, >= 512."""
    return build_model("idih512", dict(_IDIH, depth=8), kwargs, pretrained=pretrained)
