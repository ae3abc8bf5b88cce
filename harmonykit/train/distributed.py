"""Data-parallel helpers for ``torchrun`` (gloo on CPU, nccl on CUDA).

The trainer does not wrap modules in ``DistributedDataParallel``: a CharmNet iteration runs two
forwards of the generator (one per domain) and a discriminator step between forward and
backward, which DDP's reducer does not support without ``static_graph`` tricks. Instead every
rank computes gradients on its shard and :func:`all_reduce_grads` averages them (bucketed
all-reduce) before clipping and the optimiser step, which is the same update as DDP.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, List

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "all_reduce_grads",
    "broadcast_module",
    "all_reduce_mean",
    "ShardedBatchSampler",
]

_logger = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Process-group facts: ``rank``, ``world_size``, ``local_rank``, ``enabled``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = os.environ.get("HARMONYKIT_DIST_BACKEND") or (
            "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
        )
        if device_type == "cuda":
            torch.cuda.set_device(cuda_index(local))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        _logger.info("distributed: rank %d/%d (%s)", rank, world, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, enabled=True)


def cuda_index(local_rank: int) -> int:
    """The GPU of a local rank: ``local_rank`` modulo the visible GPUs, so more processes than
    GPUs share them (e.g. ``torchrun --nproc_per_node 2`` on one GPU, for testing; NCCL itself
    may refuse two ranks on one GPU: ``HARMONYKIT_DIST_BACKEND=gloo`` then)."""
    n = torch.cuda.device_count()
    return local_rank % n if n else local_rank


def cleanup_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _coalesced(tensors: List[torch.Tensor], op, world: int, average: bool, bucket_bytes: int = 25 * 2**20) -> None:
    bucket: List[torch.Tensor] = []
    size = 0

    def flush() -> None:
        nonlocal bucket, size
        if not bucket:
            return
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat, op=op)
        if average:
            flat.div_(world)
        off = 0
        for t in bucket:
            n = t.numel()
            t.copy_(flat[off : off + n].view_as(t))
            off += n
        bucket, size = [], 0

    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or size + t.numel() * t.element_size() > bucket_bytes):
            flush()
        bucket.append(t)
        size += t.numel() * t.element_size()
    flush()


def all_reduce_grads(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Average ``.grad`` over ranks (a missing grad counts as zero on that rank)."""
    if not info.enabled:
        return
    grads = []
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    _coalesced(grads, dist.ReduceOp.SUM, info.world_size, average=True)


def broadcast_module(module: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over ranks (for logging)."""
    if not info.enabled:
        return value
    v = value.detach().clone().float()
    dist.all_reduce(v)
    return v / info.world_size


class ShardedBatchSampler(Sampler[List[int]]):
    """Resumable, rank-aware batch sampler.

    Epoch ``e`` uses the permutation of ``torch.Generator().manual_seed(seed + e)`` (or the
    identity without ``shuffle``). Global batch ``b`` is ``perm[b*G:(b+1)*G]`` with
    ``G = batch_size * world_size``; rank ``r`` takes its ``r``-th slice, so N processes see
    exactly the samples of one process with an N-times larger batch. Incomplete global
    batches are dropped. ``set_epoch(e, start_batch)`` resumes in the middle of an epoch.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.bs, self.shuffle, self.seed = int(num_samples), int(batch_size), bool(shuffle), int(seed)
        self.rank, self.world = int(rank), int(world_size)
        self.epoch, self.start = 0, 0
        if len(self) == 0:
            raise ValueError(
                f"{num_samples} samples are fewer than one global batch ({batch_size} x {world_size} processes)"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return self.n // (self.bs * self.world)

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            perm = list(range(self.n))
        g = self.bs * self.world
        for b in range(self.start, len(self)):
            lo = b * g + self.rank * self.bs
            yield perm[lo : lo + self.bs]
