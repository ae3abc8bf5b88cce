"""Deterministic synthetic harmonization pairs (for tests, dry runs and benchmarks).

Sample ``i`` of domain ``d`` depends only on ``(seed, d, i)``: a random smooth image (bilinear
upsampling of a coarse noise grid) is the ground truth ``real``; ``mask`` is one rectangle
covering 10-40 % of the image; ``composite`` is ``real`` with a per-channel gain/offset applied
inside the mask. Rendered samples carry a soft style label ``(1 - r) e_bg + r e_fg`` (r = the
foreground fraction) and the hard label ``bg``, as the RdHarmony lists do.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["SyntheticHarmonizationDataset", "synthetic_batch"]

_logger = logging.getLogger(__name__)

_DOMAIN_ID = {"rendered": 1, "real": 2}  # the paper's domains keep their historical seeds


def _domain_id(domain: str) -> int:
    return _DOMAIN_ID.get(domain, 3 + zlib.crc32(domain.encode()) % 1_000_000)


class SyntheticHarmonizationDataset(Dataset):
    """``length`` deterministic samples of one domain at ``image_size`` x ``image_size``.

    Items are dicts: ``composite``, ``real`` ``(3, H, W)`` in [0, 1], ``mask`` ``(1, H, W)`` in
    {0, 1}, ``domain``, ``name``, and with ``style_labels`` ``style_soft`` ``(K,)`` float32 and
    ``style`` (int64 scalar).

    Args:
        domain: any domain name (the sample stream depends on it).
        style_labels: add the style labels (default: for the ``"rendered"`` domain, as RdHarmony).
    """

    def __init__(
        self,
        length: int = 64,
        image_size: int = 256,
        domain: str = "real",
        seed: int = 0,
        num_styles: int = 10,
        style_labels: Optional[bool] = None,
    ) -> None:
        if not isinstance(domain, str) or not domain:
            raise ValueError(f"domain must be a non-empty name, got {domain!r}")
        self.length, self.image_size, self.domain = int(length), int(image_size), domain
        self.seed, self.num_styles = int(seed), int(num_styles)
        self.style_labels = (domain == "rendered") if style_labels is None else bool(style_labels)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + _domain_id(self.domain) * 100_003 + index) % (2**63))
        s = self.image_size
        coarse = torch.rand(1, 3, 6, 6, generator=g)
        real = F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)[0].clamp(0, 1)
        area = 0.1 + 0.3 * torch.rand((), generator=g).item()
        aspect = 0.5 + torch.rand((), generator=g).item()
        h = max(2, min(s, int(round((area * s * s * aspect) ** 0.5))))
        w = max(2, min(s, int(round(area * s * s / h))))
        y0 = int(torch.randint(0, s - h + 1, (), generator=g))
        x0 = int(torch.randint(0, s - w + 1, (), generator=g))
        mask = torch.zeros(1, s, s)
        mask[:, y0 : y0 + h, x0 : x0 + w] = 1.0
        gain = 0.6 + 0.8 * torch.rand(3, 1, 1, generator=g)
        offset = 0.2 * (torch.rand(3, 1, 1, generator=g) - 0.5)
        composite = torch.where(mask.bool(), (real * gain + offset).clamp(0, 1), real)
        item: Dict[str, Any] = {
            "composite": composite,
            "real": real,
            "mask": mask,
            "domain": self.domain,
            "name": f"synthetic_{self.domain}_{index:06d}",
        }
        if self.style_labels:
            k = self.num_styles
            bg = int(torch.randint(0, k, (), generator=g))
            fg = (bg + 1 + int(torch.randint(0, k - 1, (), generator=g))) % k
            r = float(mask.mean())
            soft = torch.zeros(k)
            soft[bg] = 1.0 - r
            soft[fg] = r
            item["style_soft"] = soft
            item["style"] = torch.tensor(bg, dtype=torch.int64)
        return item


def synthetic_batch(batch_size: int, image_size: int = 256, domain: str = "real", seed: int = 0, start: int = 0) -> Dict[str, Any]:
    """A collated batch of samples ``start .. start + batch_size - 1``."""
    from torch.utils.data import default_collate

    ds = SyntheticHarmonizationDataset(start + batch_size, image_size, domain, seed)
    return default_collate([ds[i] for i in range(start, start + batch_size)])
