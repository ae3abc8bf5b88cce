"""iDIH / DIH UNet backbone (Sofiiuk et al., "Foreground-aware Semantic Representations for
Image Harmonization", WACV 2021), numerically equal to the official ``improved_dih256``.

The network is exposed as ordered stages so that a domain adapter can split it at any depth:
``encoder[i]`` (conv k4/s2 -> [BN] -> ELU) for ``i < depth``, ``decoder[j]`` (deconv k4/s2 ->
BN -> ELU) for ``j < depth``, whose output is summed with ``encoder[skip_sources[j]]``
(additive skips), and ``head`` (blending layer).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import FeatureInfo, StageBackbone, StageOutput
from harmonykit.models.layers import BlendingHead, DecoderStage, EncoderStage, init_weights
from harmonykit.normalization import denormalize, normalize
from harmonykit.registry import BACKBONES

__all__ = ["UNetBackbone", "encoder_channels", "unet_forward", "valid_size_message", "idih256", "dih256", "idih512"]


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
    return build_model("idih256", _IDIH, kwargs)


@register_model
def dih256(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DIH-256: BatchNorm in every encoder stage, no blending layer."""
    return build_model("dih256", dict(_IDIH, batchnorm_from=0, image_fusion=False), kwargs)


@register_model
def idih512(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """iDIH-512 (Samsung ``improved_dih512``): depth 8, inputs multiples of 256, >= 512."""
    return build_model("idih512", dict(_IDIH, depth=8), kwargs)
