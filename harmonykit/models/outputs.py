"""The object every harmonization model returns."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterator, Optional

import torch

__all__ = ["HarmonizationOutput"]


@dataclass
class HarmonizationOutput:
    """What a harmonizer returns.

    Attributes:
        image: harmonized image ``(B, 3, H, W)``, denormalised to the [0, 1] scale but **not
            clamped** (the network can overshoot; clamp for display or metrics).
        image_normalized: the same image in ImageNet-normalised space, exactly what the
            official networks output; the training losses use it.
        attention: blending map ``A`` ``(B, 1, H, W)`` in [0, 1]
            (output = A * composite + (1 - A) * rendered); ``None`` without blending.
        features_in: ``f``, the output of the (domain-specific) encoder at the split point
            ``(B, C, h, w)``; read by the domain discriminator and the P_in style head.
        features_out: ``g``, the output of the shared decoder stage ``(B, C, h, w)``;
            read by the P_out style head.
        extras: model-specific tensors by name (e.g. the intrinsic model's ``reflectance``
            and ``illumination``, a colour-transform model's ``transform``).
    """

    image: torch.Tensor
    image_normalized: torch.Tensor
    attention: Optional[torch.Tensor] = None
    features_in: Optional[torch.Tensor] = None
    features_out: Optional[torch.Tensor] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extras" and getattr(self, f.name) is not None}
        out.update(self.extras)
        return out

    def __iter__(self) -> Iterator[torch.Tensor]:  # allows `image, *_ = out`
        return iter(v for v in self.to_dict().values())
