"""Training data and domain routing.

- :class:`DomainPlan`: the data domains a ``train.mode`` reads (from the recipe), the model
  branch each one runs (from the model's ``.domains``), and which domains an iteration uses
  (``two_stage``: the first domain, then the last), with the epoch / batch position of every
  iteration (what exact resume relies on).
- :class:`TrainData`: per-domain datasets with resumable, rank-aware batch samplers, and the
  validation set. :meth:`TrainData.from_recipe` builds them from the synthetic generator or
  from ``harmonykit.registry.DATASETS`` entries, and checks that each dataset's ``domain`` tag
  matches the recipe key it is loaded under.

Domain names are never spelled out here: they come from ``train.domains`` / ``train.domain``
(defaults: :data:`harmonykit.models.base.CHARMNET_DOMAINS` / ``DEFAULT_DOMAIN``) and from
the model.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from harmonykit.registry import DATASETS
from harmonykit.train.distributed import DistInfo, ShardedBatchSampler
from harmonykit.train.synthetic import SyntheticHarmonizationDataset

__all__ = ["DomainPlan", "TrainData", "recipe_domains", "component_kwargs", "worker_augmentation"]

TWO_STAGE_EPOCH_OFFSET = 100_000  # stage-1 epochs are numbered from here (distinct shuffles)


def component_kwargs(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """A recipe component's constructor kwargs (everything but ``name``)."""
    return {k: v for k, v in spec.items() if k != "name"}


def recipe_domains(recipe: Mapping[str, Any]) -> Tuple[str, ...]:
    """The data domains ``train.mode`` reads: ``(train.domain,)`` for ``single``, else
    ``train.domains`` in order (``charmnet``: source, target; ``two_stage``: stage 1, stage 2)."""
    t = recipe["train"]
    return (t["domain"],) if t["mode"] == "single" else tuple(t["domains"])


@dataclass(frozen=True)
class DomainPlan:
    """Which data domains a mode reads and which model branch each runs.

    Attributes:
        mode: ``train.mode``.
        domains: the data domains, in order (``source`` = first, ``target`` = last).
        branches: data domain -> the ``domain`` argument of the model's forward.
        stage1: ``two_stage``: iterations on the first domain before switching (set by
            :meth:`with_schedule`).
    """

    mode: str
    domains: Tuple[str, ...]
    branches: Mapping[str, Optional[str]]
    stage1: int = 0

    @property
    def source(self) -> str:
        return self.domains[0]

    @property
    def target(self) -> str:
        return self.domains[-1]

    @classmethod
    def for_model(cls, recipe: Mapping[str, Any], model: nn.Module) -> "DomainPlan":
        """Route the recipe's data domains to the model's branches.

        A data domain runs the model branch of the same name; a single-domain model runs its
        one branch for every data domain (fusion / two-stage baselines). ``charmnet`` needs a
        model with a branch for each of its two data domains.
        """
        mode = recipe["train"]["mode"]
        domains = recipe_domains(recipe)
        model_domains = tuple(getattr(model, "domains", ()))
        name = recipe["model"]["name"]
        key = "train.domain" if mode == "single" else "train.domains"
        if mode == "charmnet":
            if len(model_domains) < 2:
                raise ValueError(
                    f"model.name: train.mode=charmnet needs a two-domain model, {name!r} has domains {list(model_domains)}"
                )
            missing = [d for d in domains if d not in model_domains]
            if missing:
                raise ValueError(
                    f"{key}: {list(domains)} are not all domains of model {name!r} (it has {list(model_domains)}); "
                    f"set {key} to two of them, source first"
                )
        branches: Dict[str, Optional[str]] = {}
        for d in domains:
            if d in model_domains:
                branches[d] = d
            elif len(model_domains) <= 1:
                branches[d] = None  # the model's one branch
            else:
                raise ValueError(
                    f"{key}: data domain {d!r} is not a domain of model {name!r} (it has {list(model_domains)})"
                )
        return cls(mode, domains, branches)

    # --- schedule ------------------------------------------------------------------------
    def with_schedule(self, recipe: Mapping[str, Any], data: Optional["TrainData"]) -> "DomainPlan":
        """A copy with ``stage1`` computed for ``data`` (``two_stage`` only)."""
        t = recipe["train"]
        stage1 = 0
        if self.mode == "two_stage":
            if t["stage1_iterations"] is not None:
                stage1 = int(t["stage1_iterations"])
            else:
                stage1 = int(t["stage1_epochs"]) * (data.num_batches(self.source) if data else 1)
        return DomainPlan(self.mode, self.domains, self.branches, stage1)

    def step_domains(self, it: int) -> Tuple[str, ...]:
        """The data domains iteration ``it`` reads."""
        if self.mode == "two_stage":
            return (self.source,) if it < self.stage1 else (self.target,)
        return self.domains

    def iterations(self, recipe: Mapping[str, Any], data: "TrainData") -> Tuple[int, int]:
        """(iterations per epoch, total iterations); an epoch ends with the shortest domain."""
        t = recipe["train"]
        if self.mode == "two_stage":
            ipe = data.num_batches(self.target)
        else:
            ipe = min(data.num_batches(d) for d in self.domains)
        total = t["iterations"] if t["iterations"] is not None else t["epochs"] * ipe + self.stage1
        return ipe, int(total)

    def position(self, it: int, data: "TrainData", ipe: int) -> Tuple[int, int, Tuple[str, ...]]:
        """(epoch, batch index, domains) of iteration ``it``."""
        doms = self.step_domains(it)
        if self.mode == "two_stage" and it < self.stage1:
            n = data.num_batches(self.source)
            return TWO_STAGE_EPOCH_OFFSET + it // n, it % n, doms
        j = it - self.stage1
        return j // ipe, j % ipe, doms


# ------------------------------------------------------------------------------------------
class TrainData:
    """Per-domain datasets with resumable, rank-aware batch samplers.

    ``batches(domain, epoch, start_batch)`` iterates the batches of one epoch from
    ``start_batch``; the order depends only on (seed, domain, epoch), so a resumed run sees
    the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        dist_info: Optional[DistInfo] = None,
        val: Optional[Dataset] = None,
        val_batch_size: int = 8,
        shuffle: bool = True,
        crop: Optional[nn.Module] = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        pin_memory: bool = False,
    ) -> None:
        info = dist_info or DistInfo()
        self.datasets = dict(datasets)
        self.crop = crop
        if crop is not None:  # crop in the workers: uint8 crops cross the process boundary
            from harmonykit.data.worker_crop import WorkerCropDataset

            self.datasets = {
                dom: WorkerCropDataset(ds, crop, seed=seed, salt=i + 1) for i, (dom, ds) in enumerate(self.datasets.items())
            }
            if getattr(crop, "backend", None) == "cv2":
                from harmonykit.data.cv2_crop import _cv2

                _cv2()  # import OpenCV before the workers fork: they share its pages instead of each loading it
        self.val = val
        self.val_batch_size = val_batch_size
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.persistent_workers, self.prefetch_factor, self.pin_memory = persistent_workers, prefetch_factor, pin_memory
        self._loaders: Dict[str, DataLoader] = {}
        self.samplers = {}
        for i, (dom, ds) in enumerate(self.datasets.items()):
            try:
                self.samplers[dom] = ShardedBatchSampler(len(ds), batch_size, shuffle, seed * 1000 + 101 * (i + 1), info.rank, info.world_size)
            except ValueError as e:
                raise ValueError(f"data.{dom}: {e}") from None

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], dist_info: Optional[DistInfo] = None, synthetic: bool = False) -> "TrainData":
        """Build from ``recipe["data"]`` (``synthetic=True`` forces synthetic tensors).

        With ``data.crop_in_workers`` the augmentation's aligned crop runs in the workers
        (:class:`~harmonykit.data.worker_crop.WorkerCropDataset`); the trainer then runs only
        the rest of the augmentation on the device.

        Raises ``ValueError`` when a dataset's ``domain`` tag differs from the recipe key
        (``data.<domain>``) it is loaded under."""
        d, t = recipe["data"], recipe["train"]
        domains = recipe_domains(recipe)
        crop = None
        if synthetic or d["kind"] == "synthetic":
            s = d["synthetic"]
            labels = {dom: (i == 0) for i, dom in enumerate(domains)} if len(domains) > 1 else {}
            sets = {
                dom: SyntheticHarmonizationDataset(
                    s["length"], s["image_size"], dom, recipe["seed"], s["num_styles"], labels.get(dom)
                )
                for dom in domains
            }
            # validation runs the model's default branch: the target domain of the recipe
            val = SyntheticHarmonizationDataset(s["val_length"], s["image_size"], t["domains"][-1], recipe["seed"] + 7919)
            workers = 0
        else:
            sets = {}
            for dom in domains:
                spec = d.get(dom)
                if spec is None:
                    raise ValueError(f"data.{dom}: train.mode={t['mode']} needs a {dom} dataset")
                sets[dom] = DATASETS.create(spec["name"], **component_kwargs(spec))
                check_domain_tag(sets[dom], dom, spec["name"])
            val = DATASETS.create(d["val"]["name"], **component_kwargs(d["val"])) if d["val"] else None
            workers = d["num_workers"]
            if d.get("crop_in_workers") and d.get("augmentation") is not None:
                crop, _ = worker_augmentation(recipe)
        pin = d.get("pin_memory")
        if pin is None:  # on when training on CUDA
            dev = str(t["device"] or "auto")
            pin = torch.cuda.is_available() and (dev == "auto" or dev.startswith("cuda"))
        return cls(sets, t["batch_size"], recipe["seed"], workers, dist_info, val, recipe["val"]["batch_size"],
                   crop=crop, persistent_workers=d.get("persistent_workers", True),
                   prefetch_factor=d.get("prefetch_factor", 2), pin_memory=bool(pin))

    def num_batches(self, domain: str) -> int:
        return len(self.samplers[domain])

    def _loader_kwargs(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = dict(num_workers=self.num_workers, pin_memory=self.pin_memory)
        if self.num_workers > 0:
            _single_threaded_cv2()  # before the workers fork (see the function)
            kw.update(prefetch_factor=self.prefetch_factor, persistent_workers=self.persistent_workers,
                      worker_init_fn=functools.partial(_yield_to_training, increment=worker_nice()))
        return kw

    def batches(self, domain: str, epoch: int, start_batch: int = 0) -> Iterator[Dict[str, Any]]:
        """The batches of ``epoch`` of ``domain`` from ``start_batch``. With workers and
        ``persistent_workers``, one loader per domain is kept and re-iterated (its workers
        live across epochs); a new call drops what the previous iterator of the domain had
        prefetched."""
        sampler = self.samplers[domain]
        sampler.set_epoch(epoch, start_batch)
        if self.num_workers > 0 and self.persistent_workers:
            loader = self._loaders.get(domain)
            if loader is None:
                loader = self._loaders[domain] = self._make_loader(domain, torch.Generator().manual_seed(self.seed * 7_368_787 + len(domain)))
            return iter(loader)
        gen = torch.Generator().manual_seed(self.seed * 7_368_787 + epoch * 31 + len(domain))
        return iter(self._make_loader(domain, gen))

    def _make_loader(self, domain: str, gen: torch.Generator) -> DataLoader:
        from harmonykit.data.worker_crop import EpochBatchSampler

        sampler = self.samplers[domain]
        return DataLoader(
            self.datasets[domain],
            batch_sampler=EpochBatchSampler(sampler) if self.crop is not None else sampler,
            generator=gen,
            collate_fn=_collate_fn(self.datasets[domain]),
            **self._loader_kwargs(),
        )

    def val_loader(self) -> Optional[DataLoader]:
        if self.val is None:
            return None
        return DataLoader(self.val, batch_size=self.val_batch_size, shuffle=False, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, collate_fn=_collate_fn(self.val))


def worker_nice() -> int:
    """The ``nice`` increment of DataLoader workers: ``HARMONYKIT_WORKER_NICE`` (default 10; 0 keeps
    the parent's priority). Raises ``ValueError`` naming the variable when it is not an integer in
    0..19, so a typo fails at start-up instead of being ignored inside the workers."""
    import os

    raw = os.environ.get("HARMONYKIT_WORKER_NICE", "10")
    try:
        inc = int(raw.strip())
    except ValueError:
        inc = -1
    if not 0 <= inc <= 19:
        raise ValueError(f"HARMONYKIT_WORKER_NICE={raw!r}: expected an integer from 0 (keep the priority) to 19")
    return inc


def _yield_to_training(worker_id: int, increment: int = 10) -> None:
    """DataLoader ``worker_init_fn``: lower the worker's CPU priority by ``increment``
    (:func:`worker_nice`; 0 keeps it). On a machine with few cores the workers refilling
    the prefetch queue otherwise take CPU time from the training step that is waiting for it;
    niced, they run when a core is idle (single-threaded stretches of the step) and still get
    all the CPU when the step waits for data. Batches do not depend on it."""
    import os

    if increment > 0 and hasattr(os, "nice"):
        try:
            os.nice(increment)
        except OSError:  # not permitted here: the worker keeps the parent's priority
            pass


def _single_threaded_cv2() -> None:
    """OpenCV runs single-threaded once DataLoader workers are used: its thread pool does not
    survive ``fork``, and a forked worker that touches it (even ``cv2.setNumThreads`` in the
    child) can hang when the parent has used the pool, e.g. for PCT-Net's official view. Set
    in the parent, before the fork; the crops are small, results do not depend on it."""
    import sys

    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)


def worker_augmentation(recipe: Mapping[str, Any]) -> Tuple[nn.Module, Optional[nn.Module]]:
    """``data.crop_in_workers``: (the crop the workers run, the rest of ``data.augmentation``
    that runs on the model's device, or None). ``ValueError`` when there is no crop to move."""
    from harmonykit.data.worker_crop import split_crop
    from harmonykit.registry import AUGMENTATIONS

    spec = recipe["data"]["augmentation"]
    if spec is None:
        raise ValueError("data.crop_in_workers: true needs data.augmentation (an aligned crop to run in the workers)")
    return split_crop(AUGMENTATIONS.create(spec["name"], **component_kwargs(spec)))


def check_domain_tag(ds: Dataset, key: str, name: str) -> None:
    """``ValueError`` when ``ds.domain`` (if the dataset has one) is not ``key``."""
    tag = getattr(ds, "domain", None)
    if tag is not None and tag != key:
        raise ValueError(
            f"data.{key}: dataset {name!r} has domain {tag!r} but is loaded under data.{key} "
            f"(the {key!r} domain); move it to data.{tag} or set data.{key}.domain: {key}"
        )


def _collate_fn(ds: Dataset):
    """The data package's collate (keeps differently sized images as lists) for real datasets."""
    if isinstance(ds, SyntheticHarmonizationDataset):
        return None
    from harmonykit.data.collate import collate_samples

    return collate_samples
