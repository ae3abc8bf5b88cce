"""Validation during training: the generator's default branch on the validation set, scored
by a :mod:`harmonykit.eval.metrics` protocol (``val.protocol``, default ``idih``)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Dict, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from harmonykit.eval.metrics import get_protocol

__all__ = ["validate", "resize_batch", "VAL_METRICS", "higher_is_better"]

VAL_METRICS = ("mse", "fmse", "psnr", "fpsnr")
"""The metrics validation reports (SSIM is left to ``harmonykit eval``: it is the slow part)."""


def higher_is_better(metric: str) -> bool:
    return metric in ("psnr", "fpsnr", "ssim", "fssim")


@torch.no_grad()
def validate(
    net: nn.Module,
    loader: Optional[DataLoader],
    image_size: int,
    device: torch.device,
    protocol: str = "idih",
    max_batches: Optional[int] = None,
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, float]:
    """Mean per-image metrics (0-255 units) of ``net`` on ``loader``, in eval mode.

    Each sample is resized (bilinear) to ``image_size`` x ``image_size``; the network runs its
    default branch (``domain=None``); the prediction ``out.image`` (B, 3, S, S) in [0, 1] (not
    clamped: the protocol clamps) is scored against ``real`` with ``mask`` by ``protocol``.
    Returns ``{}`` when there is no validation set.
    """
    if loader is None:
        return {}
    proto = get_protocol(protocol)
    was = net.training
    net.eval()
    records = []
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            bt = resize_batch(batch, image_size, device)
            with autocast():
                out = net(bt["composite"], bt["mask"], domain=None)
            records += proto(out.image.float(), bt["real"].float(), bt["mask"].float(), ssim=False)
    finally:
        net.train(was)
    means = proto.mean(records)
    return {k: float(means[k]) for k in VAL_METRICS if k in means}


def resize_batch(batch: Mapping[str, Any], size: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """``composite``, ``real``, ``mask`` as ``(B, C, size, size)`` on ``device`` (bilinear resize
    of each sample whose size differs; lists of differently sized samples are allowed)."""
    out: Dict[str, torch.Tensor] = {}
    for k in ("composite", "real", "mask"):
        v = batch[k]
        items = list(v) if isinstance(v, (list, tuple)) else list(v.unbind(0))
        res = []
        for t in items:
            t = t.to(device).float().unsqueeze(0)
            if t.shape[-2:] != (size, size):
                t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
            res.append(t)
        out[k] = torch.cat(res)
    return out
