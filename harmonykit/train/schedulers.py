"""Learning-rate schedulers of the trainer.

Everything is a timm scheduler (:func:`timm.scheduler.create_scheduler_v2`) except ``multistep``:
timm's :class:`~timm.scheduler.MultiStepLRScheduler` applies a milestone ``m`` one step early
(it compares milestones with ``t + 1``), while the official iDIH recipe uses
``torch.optim.lr_scheduler.MultiStepLR(milestones=[105, 115])`` stepped per epoch, whose lr
changes **at** epochs 105 and 115 (0-based epoch index: the first 105 epochs run at the base
lr). :class:`MultiStepAtMilestones` keeps timm's interface (warmup, noise, ``step`` /
``step_update``, state dicts) with torch's boundary.
"""
from __future__ import annotations

import bisect
from typing import Any, Mapping, Optional

import torch
from timm.scheduler import MultiStepLRScheduler
from timm.scheduler.scheduler import Scheduler

__all__ = ["MultiStepAtMilestones", "LinearDecay", "create_scheduler"]


class MultiStepAtMilestones(MultiStepLRScheduler):
    """timm multistep schedule whose milestone ``m`` takes effect at schedule index ``t == m``
    (``torch.optim.lr_scheduler.MultiStepLR``): ``lr(t) = base * rate ** #{m : m <= t}``."""

    def get_curr_decay_steps(self, t: int) -> int:
        return bisect.bisect_right(self.decay_t, t)


class LinearDecay(Scheduler):
    """pix2pix / CycleGAN ``--lr_policy linear`` (DoveNet, RainNet, Guo et al.): constant for
    ``niter`` epochs, then linearly to 0 over ``niter_decay`` more:
    ``lr(e) = base * (1 - max(0, e + 1 - niter) / (niter_decay + 1))`` (official
    ``epoch_count = 1``). ``per``: schedule steps per epoch (1 when stepped on epochs)."""

    def __init__(self, optimizer: torch.optim.Optimizer, niter: int, niter_decay: int, per: int = 1, t_in_epochs: bool = True) -> None:
        self.niter, self.niter_decay, self.per = int(niter), int(niter_decay), max(int(per), 1)
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=t_in_epochs)

    def _get_lr(self, t: int):
        e = int(t) // self.per
        f = 1.0 - max(0, e + 1 - self.niter) / float(self.niter_decay + 1)
        return [v * f for v in self.base_values]


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    sched: Mapping[str, Any],
    iters_per_epoch: int,
    total_epochs: int,
) -> Optional[Any]:
    """The scheduler of a recipe's ``sched`` section (None for ``none`` / ``constant``).

    ``step_on_epochs: true`` -> call ``step(epoch)`` with the number of finished epochs;
    otherwise ``step_update(num_updates=iteration)`` (milestones and warmup in epochs are
    converted to iterations).
    """
    name = sched["name"]
    if name in ("none", "constant", "const"):
        return None
    if name == "multistep":
        per = 1 if sched["step_on_epochs"] else int(iters_per_epoch)
        return MultiStepAtMilestones(
            optimizer,
            decay_t=[int(m) * per for m in sched["decay_milestones"]],
            decay_rate=sched["decay_rate"],
            warmup_t=int(sched["warmup_epochs"]) * per,
            warmup_lr_init=sched["warmup_lr"],
            warmup_prefix=False,
            t_in_epochs=bool(sched["step_on_epochs"]),
        )
    if name == "linear_decay":
        per = 1 if sched["step_on_epochs"] else int(iters_per_epoch)
        niter = int(sched["decay_epochs"])
        # a run shorter than decay_epochs (e.g. train.iterations) stays at the base lr
        return LinearDecay(optimizer, niter, max(total_epochs - niter, 0), per, t_in_epochs=bool(sched["step_on_epochs"]))
    from timm.scheduler import create_scheduler_v2

    s, _ = create_scheduler_v2(
        optimizer,
        sched=name,
        num_epochs=total_epochs,
        decay_epochs=sched["decay_epochs"],
        decay_milestones=sched["decay_milestones"],
        decay_rate=sched["decay_rate"],
        warmup_epochs=sched["warmup_epochs"],
        warmup_lr=sched["warmup_lr"],
        min_lr=sched["min_lr"],
        step_on_epochs=sched["step_on_epochs"],
        updates_per_epoch=iters_per_epoch,
    )
    return s
