"""Batching: sample dicts -> batch dicts, and device transfer.

Datasets yield full-size samples whose sizes differ, so :func:`collate_samples` stacks a tensor
key only when every sample has the same shape and otherwise keeps a **list** of per-sample
tensors; :class:`~harmonykit.data.augment.AlignedRandomResizedCrop` turns such lists into
``(B, C, 256, 256)`` tensors on the device. (Alternatively give the dataset a
:class:`~harmonykit.data.augment.RandomResizedCropSample` transform and everything stacks, or
wrap it in :class:`~harmonykit.data.worker_crop.WorkerCropDataset`: uint8 crops cross the process
boundary and :func:`images_to_float` converts them on the model's device.)

Training batches (per domain, seeded, resumable, rank-aware) come from
:class:`harmonykit.train.data.TrainData`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Sequence

import torch
from torch import Tensor

__all__ = ["collate_samples", "batch_to_device", "images_to_float"]

_logger = logging.getLogger(__name__)


def collate_samples(samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Sample dicts -> a batch dict.

    Tensors of equal shape are stacked to ``(B, ...)``; tensors of different shapes stay a
    list; strings and other values become lists. Keys missing from some samples are dropped
    with a debug message (e.g. ``style_soft`` in a batch mixing domains).
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    keys = [k for k in samples[0] if all(k in s for s in samples)]
    dropped = set().union(*(s.keys() for s in samples)) - set(keys)
    if dropped:
        _logger.debug("collate: dropping keys missing from some samples: %s", sorted(dropped))
    out: Dict[str, Any] = {}
    for k in keys:
        vals = [s[k] for s in samples]
        if all(isinstance(v, Tensor) for v in vals):
            if all(v.shape == vals[0].shape for v in vals):
                out[k] = torch.stack(vals, 0)
            else:
                out[k] = vals
        else:
            out[k] = vals
    return out


def batch_to_device(batch: Dict[str, Any], device: Any, non_blocking: bool = True) -> Dict[str, Any]:
    """Move every tensor (and every tensor in a list) of a batch dict to ``device``."""
    out: Dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, Tensor):
            out[k] = v.to(device, non_blocking=non_blocking)
        elif isinstance(v, list) and v and all(isinstance(t, Tensor) for t in v):
            out[k] = [t.to(device, non_blocking=non_blocking) for t in v]
        else:
            out[k] = v
    return out


def images_to_float(batch: Dict[str, Any], keys: Sequence[str] = ("composite", "real", "mask")) -> Dict[str, Any]:
    """uint8 image tensors (``(B, C, H, W)`` or lists) -> float32 ``x / 255`` in [0, 1], on their
    own device (move the batch first: the uint8 bytes are what crosses PCIe). Float tensors are
    left as they are. Returns a new dict."""
    out = dict(batch)
    for k in keys:
        v = out.get(k)
        if isinstance(v, Tensor) and v.dtype == torch.uint8:
            out[k] = v.float() / 255.0
        elif isinstance(v, list) and v and all(isinstance(t, Tensor) and t.dtype == torch.uint8 for t in v):
            out[k] = [t.float() / 255.0 for t in v]
    return out
