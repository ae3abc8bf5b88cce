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

from harmonykit.models.layers import BlendingHead, DecoderStage, EncoderStage, init_weights
from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from harmonykit.registry import BACKBONES

__all__ = ["UNetBackbone", "encoder_channels", "unet_forward", "check_inputs", "valid_size_message"]


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


def check_inputs(composite: torch.Tensor, mask: torch.Tensor, depth: int) -> None:
    """Validate shapes: composite ``(B, 3, H, W)``, mask ``(B, 1, H, W)``, H/W valid for depth."""
    if not isinstance(composite, torch.Tensor) or composite.ndim != 4 or composite.shape[1] != 3:
        raise ValueError(f"composite must be a (B, 3, H, W) tensor, got {_shape(composite)}")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be a (B, 1, H, W) tensor, got {_shape(mask)}")
    if mask.shape[0] != composite.shape[0] or mask.shape[-2:] != composite.shape[-2:]:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match composite {tuple(composite.shape)} in batch or size"
        )
    h, w = composite.shape[-2:]
    div, low = 2**depth, 2 ** (depth + 1)
    if h % div or w % div or h < low or w < low:
        raise ValueError(valid_size_message(depth, h, w))


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


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
class UNetBackbone(nn.Module):
    """The iDIH UNet (``image_fusion=True``) or DIH (``image_fusion=False``).

    Args:
        depth: number of encoder (and decoder) stages; 7 for 256 px models, 8 for 512.
        ch: channels of the first two encoder stages.
        max_channels: channel cap.
        batchnorm_from: first encoder stage with BatchNorm (the decoder always has it).
        image_fusion: blend the input with the predicted image through an attention map.
        in_channels: 4 (RGB + mask).
        init: weight init scheme (``"xavier_gluon"`` as Samsung, ``"normal"`` as CharmNet).

    Forward: ``model(composite, mask)`` with composite ``(B, 3, H, W)`` in [0, 1] and mask
    ``(B, 1, H, W)`` in [0, 1]; H, W multiples of ``2**depth``, at least ``2**(depth+1)``.
    Returns :class:`HarmonizationOutput`.
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
        self.depth, self.image_fusion = depth, image_fusion
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
        init_weights(self, init)

    # -- geometry ------------------------------------------------------------------------
    @property
    def size_divisor(self) -> int:
        return 2**self.depth

    @property
    def min_size(self) -> int:
        return 2 ** (self.depth + 1)

    def split_channels(self, split_depth: int) -> int:
        """Channels of ``f`` and ``g`` when the network is split after ``split_depth`` stages."""
        if not 1 <= split_depth <= self.depth - 1:
            raise ValueError(f"split_depth must be in 1..{self.depth - 1} for depth {self.depth}, got {split_depth}")
        return self.encoder_channels[split_depth - 1]

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` naming the valid sizes when ``height x width`` cannot be run."""
        div, low = self.size_divisor, self.min_size
        if height % div or width % div or height < low or width < low:
            raise ValueError(valid_size_message(self.depth, height, width))

    # -- forward -------------------------------------------------------------------------
    def forward_normalized(
        self, image: torch.Tensor, mask: torch.Tensor, split_depth: Optional[int] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Official-space forward: normalised image in, normalised output out."""
        return unet_forward(self.encoder, self.decoder, self.skip_sources, self.head, image, mask, split_depth)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> HarmonizationOutput:
        check_inputs(composite, mask, self.depth)
        out, attention, _, _ = self.forward_normalized(normalize(composite), mask)
        return HarmonizationOutput(image=denormalize(out), image_normalized=out, attention=attention)


def default_pretrained_cfg(depth: int, **extra: Any) -> Dict[str, Any]:
    """The harmonization pretrained config (what a user needs to feed the model)."""
    size = 2 ** (depth + 1)
    cfg: Dict[str, Any] = dict(
        input_size=(3, size, size),
        size_divisor=2**depth,
        min_size=size,
        value_range=(0.0, 1.0),
        color_space="rgb",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        mask_convention="foreground=1, (B, 1, H, W) float in [0, 1]",
        license=None,
        metric_protocol="charmnet",
    )
    cfg.update(extra)
    return cfg
