"""Collation, device transfer, and the mixed-domain (rendered + real) loader.

Batching: datasets yield full-size samples whose sizes differ, so :func:`collate_samples`
stacks a tensor key only when every sample has the same shape and otherwise keeps a **list**
of per-sample tensors; :class:`~harmonykit.data.augment.AlignedRandomResizedCrop` turns such
lists into ``(B, C, 256, 256)`` tensors on the device. (Alternatively give the dataset a
:class:`~harmonykit.data.augment.RandomResizedCropSample` transform and everything stacks.)

Mixed-domain training (CharmNet): one loader over the rendered set and one over the real set,
each shuffled by its own seeded sampler and with its own batch size, zipped per iteration
(the epoch ends with the shorter loader, as in the official code). Under
``torch.distributed`` each loader uses a ``DistributedSampler`` (call ``set_epoch``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

__all__ = ["collate_samples", "batch_to_device", "make_loader", "MixedDomainLoader"]

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


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    pin_memory: bool = False,
    collate_fn: Callable[[Sequence[Dict[str, Any]]], Dict[str, Any]] = collate_samples,
    persistent_workers: Optional[bool] = None,
    prefetch_factor: Optional[int] = None,
) -> DataLoader:
    """A DataLoader with a seeded sampler (``DistributedSampler`` under torch.distributed).

    The loader's generator is seeded too, so worker seeds (and anything drawn from torch's
    default RNG inside workers) are reproducible.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected >= 1")
    g = torch.Generator()
    g.manual_seed(int(seed))
    if _distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=int(seed), drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=g)
    else:
        sampler = SequentialSampler(dataset)
    kw: Dict[str, Any] = {}
    if num_workers > 0:
        kw["persistent_workers"] = bool(persistent_workers) if persistent_workers is not None else False
        if prefetch_factor is not None:
            kw["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        generator=g,
        **kw,
    )


class MixedDomainLoader:
    """Rendered and real loaders zipped per iteration: yields ``{"rendered": batch, "real": batch}``.

    Args:
        rendered: the rendered dataset (samples with ``style_soft`` / ``style``).
        real: the real dataset.
        batch_size_rendered, batch_size_real: per-domain batch sizes.
        seed: base seed; the two samplers use ``seed`` and ``seed + 1`` (independent shuffles).
        num_workers, pin_memory, drop_last: DataLoader options, for both loaders.
    ``len()`` is the number of iterations per epoch (the shorter loader). Call
    :meth:`set_epoch` at every epoch under DDP.
    """

    def __init__(
        self,
        rendered: Dataset,
        real: Dataset,
        batch_size_rendered: int = 8,
        batch_size_real: int = 8,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = True,
        collate_fn: Callable[[Sequence[Dict[str, Any]]], Dict[str, Any]] = collate_samples,
    ) -> None:
        self.loaders: Dict[str, DataLoader] = {
            "rendered": make_loader(
                rendered, batch_size_rendered, True, seed, num_workers, drop_last, pin_memory, collate_fn
            ),
            "real": make_loader(real, batch_size_real, True, seed + 1, num_workers, drop_last, pin_memory, collate_fn),
        }
        for name, ld in self.loaders.items():
            if len(ld) == 0:
                raise ValueError(
                    f"{name} loader has no full batch: {len(ld.dataset)} samples, batch size {ld.batch_size} "
                    "(expected at least one batch; lower the batch size or set drop_last=False)"
                )
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (DistributedSampler.set_epoch, or a reseeded generator)."""
        self.epoch = int(epoch)
        for i, ld in enumerate(self.loaders.values()):
            if isinstance(ld.sampler, DistributedSampler):
                ld.sampler.set_epoch(self.epoch)
            elif isinstance(ld.sampler, RandomSampler) and ld.sampler.generator is not None:
                ld.sampler.generator.manual_seed(self.seed + i + 1_000_003 * self.epoch)

    def __len__(self) -> int:
        return min(len(ld) for ld in self.loaders.values())

    def __iter__(self) -> Iterator[Dict[str, Dict[str, Any]]]:
        for rendered, real in zip(self.loaders["rendered"], self.loaders["real"]):
            yield {"rendered": rendered, "real": real}
