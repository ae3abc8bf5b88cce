"""The CharmNet / iDIH trainer.

One CharmNet iteration follows the official ``DAstyleModel.optimize_parameters`` order:

1. forward the rendered batch (``domain="rendered"``) and the real batch (``domain="real"``);
2. one discriminator step on the detached encoder features ``f`` (hinge loss);
3. one step of the generator + both style heads (one optimiser) on the weighted total loss,
   with the adversarial term evaluated by the *updated* discriminator and the same forward graph.

``train.mode`` selects the other paths: ``single`` (one domain, reconstruction only: the iDIH
baselines), ``fusion`` (one network on the union of both domains: each iteration concatenates a
rendered and a real batch) and ``two_stage`` (rendered first, then real).

Data reaches the trainer as per-domain batch dicts (see docs/architecture.md); :class:`TrainData`
builds them from the synthetic generator or from ``harmonykit.registry.DATASETS`` entries.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from harmonykit.registry import AUGMENTATIONS, DATASETS, DISCRIMINATORS, LOSSES, STYLE_HEADS
from harmonykit.train.checkpoint import CHECKPOINT_FORMAT, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from harmonykit.train.distributed import (
    DistInfo,
    ShardedBatchSampler,
    all_reduce_grads,
    all_reduce_mean,
    broadcast_module,
)
from harmonykit.train.synthetic import SyntheticHarmonizationDataset
from harmonykit.normalization import normalize
from harmonykit.utils import progress_enabled

__all__ = ["Trainer", "TrainData", "NonFiniteLossError", "DOMAINS"]

_logger = logging.getLogger(__name__)

DOMAINS = ("rendered", "real")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; ``term`` names it."""

    def __init__(self, term: str, value: float, iteration: int) -> None:
        super().__init__(f"loss term {term!r} is {value} at iteration {iteration}")
        self.term, self.value, self.iteration = term, value, iteration


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def _component_kwargs(spec: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "name"}


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
    ) -> None:
        info = dist_info or DistInfo()
        self.datasets = dict(datasets)
        self.val = val
        self.val_batch_size = val_batch_size
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.samplers = {}
        for i, (dom, ds) in enumerate(self.datasets.items()):
            try:
                self.samplers[dom] = ShardedBatchSampler(len(ds), batch_size, shuffle, seed * 1000 + 101 * (i + 1), info.rank, info.world_size)
            except ValueError as e:
                raise ValueError(f"data.{dom}: {e}") from None

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], dist_info: Optional[DistInfo] = None, synthetic: bool = False) -> "TrainData":
        """Build from ``recipe["data"]`` (``synthetic=True`` forces synthetic tensors)."""
        d, t = recipe["data"], recipe["train"]
        domains = _mode_domains(t["mode"], t["domain"])
        if synthetic or d["kind"] == "synthetic":
            s = d["synthetic"]
            sets = {
                dom: SyntheticHarmonizationDataset(s["length"], s["image_size"], dom, recipe["seed"], s["num_styles"])
                for dom in domains
            }
            val = SyntheticHarmonizationDataset(s["val_length"], s["image_size"], "real", recipe["seed"] + 7919)
            workers = 0
        else:
            sets = {}
            for dom in domains:
                spec = d[dom]
                if spec is None:
                    raise ValueError(f"data.{dom}: train.mode={t['mode']} needs a {dom} dataset")
                sets[dom] = DATASETS.create(spec["name"], **_component_kwargs(spec))
            val = DATASETS.create(d["val"]["name"], **_component_kwargs(d["val"])) if d["val"] else None
            workers = d["num_workers"]
        return cls(sets, t["batch_size"], recipe["seed"], workers, dist_info, val, recipe["val"]["batch_size"])

    def num_batches(self, domain: str) -> int:
        return len(self.samplers[domain])

    def batches(self, domain: str, epoch: int, start_batch: int = 0) -> Iterator[Dict[str, Any]]:
        sampler = self.samplers[domain]
        sampler.set_epoch(epoch, start_batch)
        gen = torch.Generator().manual_seed(self.seed * 7_368_787 + epoch * 31 + len(domain))
        loader = DataLoader(
            self.datasets[domain],
            batch_sampler=sampler,
            num_workers=self.num_workers,
            generator=gen,
            persistent_workers=False,
            collate_fn=_collate_fn(self.datasets[domain]),
        )
        return iter(loader)

    def val_loader(self) -> Optional[DataLoader]:
        if self.val is None:
            return None
        return DataLoader(self.val, batch_size=self.val_batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=_collate_fn(self.val))


def _collate_fn(ds: Dataset):
    """The data package's collate (keeps differently sized images as lists) for real datasets."""
    if isinstance(ds, SyntheticHarmonizationDataset):
        return None
    try:
        from harmonykit.data import collate_samples
    except ImportError:  # pragma: no cover - data package not installed
        return None
    return collate_samples


def _mode_domains(mode: str, domain: str) -> Tuple[str, ...]:
    return (domain,) if mode == "single" else DOMAINS


# ------------------------------------------------------------------------------------------
# trainer
# ------------------------------------------------------------------------------------------
class Trainer:
    """Builds every component of a resolved recipe and trains it.

    Args:
        recipe: a resolved recipe (:func:`harmonykit.train.recipe.load_recipe`).
        run_dir: where logs and checkpoints go (``None``: write nothing).
        device: overrides ``train.device``.
        dist_info: the process group (``torchrun``); default single process.

    Main entry points: :meth:`train_step` (one iteration on ``{"rendered": batch, "real":
    batch}``), :meth:`fit` (the loop with logging, validation and checkpoints),
    :meth:`save` / :meth:`load` (training checkpoints).
    """

    def __init__(
        self,
        recipe: Mapping[str, Any],
        run_dir: Optional[Union[str, Path]] = None,
        device: Optional[Union[str, torch.device]] = None,
        dist_info: Optional[DistInfo] = None,
    ) -> None:
        import harmonykit.losses  # noqa: F401  (registers the loss terms)
        from harmonykit.factory import create_model

        self.recipe = recipe
        self.dist = dist_info or DistInfo()
        t = recipe["train"]
        self.mode: str = t["mode"]
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = torch.device(device if device is not None else _auto_device(t["device"]))
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if recipe["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(recipe["seed"])

        # --- networks ---
        mspec = dict(recipe["model"])
        name = mspec.pop("name")
        ckpt = mspec.pop("checkpoint_path", None)
        self.model: nn.Module = create_model(name, checkpoint_path=ckpt, **mspec)
        self.discriminator: Optional[nn.Module] = None
        self.style_in: Optional[nn.Module] = None
        self.style_out: Optional[nn.Module] = None
        if self.mode == "charmnet":
            if len(getattr(self.model, "domains", ())) < 2:
                raise ValueError(f"model.name: train.mode=charmnet needs a two-domain model, {name!r} has none")
            C = int(self.model.feature_channels)
            if recipe["discriminator"] is not None:
                spec = recipe["discriminator"]
                self.discriminator = DISCRIMINATORS.create(spec["name"], in_channels=C, **_component_kwargs(spec))
            if recipe["style_heads"] is not None:
                spec = recipe["style_heads"]
                self.style_in = STYLE_HEADS.create(spec["name"], in_channels=C, **_component_kwargs(spec))
                self.style_out = STYLE_HEADS.create(spec["name"], in_channels=C, **_component_kwargs(spec))
        if t["sync_bn"] and self.dist.enabled:
            if self.device.type != "cuda":
                _logger.warning("train.sync_bn: SyncBatchNorm needs GPUs; ignored on %s", self.device)
            else:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.memory_format = torch.channels_last if t["channels_last"] else torch.contiguous_format
        for m in self._modules():
            m.to(self.device, memory_format=self.memory_format)
        for m in self._modules():
            broadcast_module(m, self.dist)
        self._fwd = torch.compile(self.model) if t["compile"] else self.model

        # --- losses (slot -> (module, weight)); inactive terms are dropped ---
        self.losses: Dict[str, Tuple[nn.Module, float]] = {}
        wanted = _mode_slots(self.mode, t["domain"], self.discriminator is not None, self.style_in is not None)
        for slot, spec in recipe["loss"].items():
            if spec is None or slot not in wanted:
                continue
            w = float(spec.get("weight", 1.0))
            if w == 0.0:
                continue
            kw = {k: v for k, v in spec.items() if k not in ("name", "weight")}
            self.losses[slot] = (LOSSES.create(spec["name"], **kw).to(self.device), w)
        if self.discriminator is not None and "discriminator" not in self.losses:
            self.discriminator = None  # no D loss: nothing would train it
        if not self.losses:
            raise ValueError("loss: every term of this train.mode is null or has weight 0")

        # --- optimisers, schedulers, scaler, EMA ---
        self.opt_g, self.opt_d = self._build_optimizers()
        self.sched_g = self.sched_d = None
        self.precision = t["precision"]
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        use_scaler = self.precision == "fp16" and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.ema = None
        if t["ema"]["enabled"]:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=t["ema"]["decay"], use_warmup=t["ema"]["warmup"])
        self.augment = None
        if recipe["data"]["augmentation"] is not None:
            spec = recipe["data"]["augmentation"]
            self.augment = AUGMENTATIONS.create(spec["name"], **_component_kwargs(spec))

        self.iteration = 0
        self.best_metric: Optional[float] = None
        self._stop = False
        self._csv_writers: Dict[str, Any] = {}
        self._tb = None

    # --------------------------------------------------------------------------------------
    def _modules(self) -> List[nn.Module]:
        return [m for m in (self.model, self.discriminator, self.style_in, self.style_out) if m is not None]

    def _g_params(self) -> List[nn.Parameter]:
        ps = list(self.model.parameters())
        for m in (self.style_out, self.style_in):
            if m is not None:
                ps += list(m.parameters())
        return ps

    def _build_optimizers(self) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.Optimizer]]:
        from timm.optim import create_optimizer_v2

        o = self.recipe["optim"]
        common = dict(opt=o["opt"], lr=o["lr"], weight_decay=o["weight_decay"], momentum=o["momentum"])
        extra: Dict[str, Any] = {}
        if _opt_takes(o["opt"], "betas"):
            extra["betas"] = tuple(o["betas"])
        if _opt_takes(o["opt"], "eps"):
            extra["eps"] = o["eps"]
        head_lr = o["head_lr"] if o["head_lr"] is not None else o["lr"]
        groups: List[Dict[str, Any]] = [{"params": list(self.model.parameters())}]
        # official group order: G, SC2 (P_out), SC1 (P_in)
        for m in (self.style_out, self.style_in):
            if m is not None:
                groups.append({"params": list(m.parameters()), "lr": head_lr})
        opt_g = create_optimizer_v2(groups, **common, **extra)
        opt_d = None
        if self.discriminator is not None:
            d_lr = o["d_lr"] if o["d_lr"] is not None else o["lr"]
            opt_d = create_optimizer_v2(list(self.discriminator.parameters()), **dict(common, lr=d_lr), **extra)
        return opt_g, opt_d

    def build_schedulers(self, iters_per_epoch: int, total_epochs: int) -> None:
        """Schedulers for both optimisers (:func:`harmonykit.train.schedulers.create_scheduler`;
        ``sched.name: none`` keeps the lr constant, ``multistep`` decays at the milestones)."""
        from harmonykit.train.schedulers import create_scheduler

        s = self.recipe["sched"]
        self.sched_g = create_scheduler(self.opt_g, s, iters_per_epoch, total_epochs)
        if self.opt_d is not None:
            self.sched_d = create_scheduler(self.opt_d, s, iters_per_epoch, total_epochs)

    # --------------------------------------------------------------------------------------
    # one iteration
    # --------------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                v = [t.to(self.device, non_blocking=True) for t in v]
            out[k] = v
        if self.augment is not None:
            out = self.augment(out)
        for k in ("composite", "real", "mask"):
            if isinstance(out.get(k), torch.Tensor) and out[k].ndim == 4:
                out[k] = out[k].contiguous(memory_format=self.memory_format)
        return out

    def _augment_generators(self) -> List[torch.Generator]:
        if self.augment is None:
            return []
        mods = self.augment.modules() if isinstance(self.augment, nn.Module) else [self.augment]
        return [g for m in mods for g in vars(m).values() if isinstance(g, torch.Generator)]

    def _forward(self, batch: Mapping[str, Any], domain: str):
        if len(getattr(self.model, "domains", ())) > 1:
            return self._fwd(batch["composite"], batch["mask"], domain=domain)
        return self._fwd(batch["composite"], batch["mask"])

    def _set_train(self) -> None:
        for m in self._modules():
            m.train()
        if self.recipe["train"]["freeze_bn"]:
            for m in self._modules():
                for mod in m.modules():
                    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                        mod.eval()

    def _check_finite(self, terms: Mapping[str, torch.Tensor]) -> None:
        if not terms:
            return
        vals = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        if bool(torch.isfinite(vals).all()):
            return
        for name, v in terms.items():
            if not bool(torch.isfinite(v.detach()).all()):
                raise NonFiniteLossError(name, float(v.detach().float()), self.iteration)

    def _recon(self, slot: str, out: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        fn, _ = self.losses[slot]
        target = normalize(batch["real"]).to(out.image_normalized.dtype)
        return fn(out.image_normalized, target, batch["mask"])

    def _optimizer_step(self, opt, scaler, loss: torch.Tensor, params: List[nn.Parameter]) -> None:
        scaler.scale(loss).backward()
        all_reduce_grads(params, self.dist)
        clip = self.recipe["optim"]["clip_grad"]
        if clip is not None:
            from timm.utils import dispatch_clip_grad

            scaler.unscale_(opt)
            dispatch_clip_grad(params, clip, mode=self.recipe["optim"]["clip_mode"])
        scaler.step(opt)
        scaler.update()

    def train_step(
        self,
        batches: Mapping[str, Mapping[str, Any]],
        after_d_step: Optional[Callable[["Trainer"], None]] = None,
    ) -> Dict[str, torch.Tensor]:
        """One training iteration on ``{"rendered": batch, "real": batch}`` (only the domains
        the mode uses are read). Returns the detached loss terms: unweighted terms under their
        slot names plus ``D_loss``, ``D_rendered``, ``D_real``, ``entropy_in``,
        ``entropy_out`` and the weighted total ``G_total``.

        ``after_d_step(trainer)`` runs right after the discriminator update (for tests).
        Raises :class:`NonFiniteLossError` before any optimiser step on a NaN / inf term.
        """
        self._set_train()
        b = {d: self._to_device(batches[d]) for d in batches}
        if self.mode == "charmnet":
            logs = self._charmnet_step(b, after_d_step)
        else:
            logs = self._single_step(b, self._step_domains(self.iteration))
        if self.ema is not None:
            self.ema.update(self.model, step=self.iteration + 1)
        return logs

    def _charmnet_step(self, b: Mapping[str, Mapping[str, Any]], after_d_step) -> Dict[str, torch.Tensor]:
        rd, rl = b["rendered"], b["real"]
        logs: Dict[str, torch.Tensor] = {}
        with self._autocast():
            out_rd = self._forward(rd, "rendered")
            out_rl = self._forward(rl, "real")
        D = self.discriminator
        # --- discriminator step on detached features ---
        if D is not None and self.opt_d is not None:
            D.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_fn, d_w = self.losses["discriminator"]
                parts = d_fn.parts(D(out_rd.features_in.detach()), D(out_rl.features_in.detach()))
            d_terms = {"D_loss": parts["total"], "D_rendered": parts["rendered"], "D_real": parts["real"]}
            self._check_finite(d_terms)
            self._optimizer_step(self.opt_d, self.scaler_d, d_w * parts["total"], list(D.parameters()))
            logs.update({k: v.detach() for k, v in d_terms.items()})
            D.requires_grad_(False)
        if after_d_step is not None:
            after_d_step(self)
        # --- generator + style heads step ---
        self.opt_g.zero_grad(set_to_none=True)
        terms: Dict[str, torch.Tensor] = {}
        with self._autocast():
            if "recon_rendered" in self.losses:
                terms["recon_rendered"] = self._recon("recon_rendered", out_rd, rd)
            if "recon_real" in self.losses:
                terms["recon_real"] = self._recon("recon_real", out_rl, rl)
            if "adversarial" in self.losses and D is not None:
                terms["adversarial"] = self.losses["adversarial"][0](D(out_rd.features_in))
            if self.style_in is not None:
                # official call order: P_in(f_rd), P_out(g_rd), P_in(f_rl), P_out(g_rl)
                lin_rd = self.style_in(out_rd.features_in)
                lout_rd = self.style_out(out_rd.features_out)
                lin_rl = self.style_in(out_rl.features_in)
                lout_rl = self.style_out(out_rl.features_out)
                if "style_in" in self.losses:
                    terms["style_in"] = self.losses["style_in"][0](lin_rd.float(), rd["style_soft"])
                if "style_out" in self.losses:
                    terms["style_out"] = self.losses["style_out"][0](lout_rd.float(), rd["style"])
                if "consistency" in self.losses:
                    terms["consistency"] = self.losses["consistency"][0](lin_rl.float(), lout_rl.float())
                if "entropy" in self.losses:
                    er = self.losses["entropy"][0]
                    p = er.parts(lin_rl.float(), lout_rl.float()) if hasattr(er, "parts") else {"total": er(lin_rl.float(), lout_rl.float())}
                    terms["entropy"] = p["total"]
                    for k in ("entropy_in", "entropy_out"):
                        if k in p:
                            logs[k] = p[k].detach()
        total = sum(self.losses[k][1] * v for k, v in terms.items())
        self._check_finite({**terms, "G_total": total})
        self._optimizer_step(self.opt_g, self.scaler_g, total, self._g_params())
        if D is not None:
            D.requires_grad_(True)
        logs.update({k: v.detach() for k, v in terms.items()})
        logs["G_total"] = total.detach()
        return logs

    def _single_step(self, b: Mapping[str, Mapping[str, Any]], domains: Sequence[str]) -> Dict[str, torch.Tensor]:
        self.opt_g.zero_grad(set_to_none=True)
        terms: Dict[str, torch.Tensor] = {}
        with self._autocast():
            if self.mode == "fusion":
                keys = ("composite", "real", "mask")
                cat = {k: torch.cat([b[d][k] for d in domains]) for k in keys}
                out = self._forward(cat, "real")
                n0 = b[domains[0]]["composite"].shape[0]
                for i, d in enumerate(domains):
                    sl = slice(0, n0) if i == 0 else slice(n0, None)
                    part = type(out)(image=out.image[sl], image_normalized=out.image_normalized[sl])
                    terms[f"recon_{d}"] = self._recon(f"recon_{d}", part, {k: cat[k][sl] for k in keys})
            else:
                for d in domains:
                    if f"recon_{d}" in self.losses:
                        terms[f"recon_{d}"] = self._recon(f"recon_{d}", self._forward(b[d], d), b[d])
        total = sum(self.losses[k][1] * v for k, v in terms.items())
        self._check_finite({**terms, "G_total": total})
        self._optimizer_step(self.opt_g, self.scaler_g, total, self._g_params())
        logs = {k: v.detach() for k, v in terms.items()}
        logs["G_total"] = total.detach()
        return logs

    # --------------------------------------------------------------------------------------
    # schedule of iterations
    # --------------------------------------------------------------------------------------
    def _stage1_iters(self, data: Optional[TrainData] = None) -> int:
        t = self.recipe["train"]
        if self.mode != "two_stage":
            return 0
        if t["stage1_iterations"] is not None:
            return int(t["stage1_iterations"])
        return int(t["stage1_epochs"]) * (data.num_batches("rendered") if data else 1)

    def _step_domains(self, it: int) -> Tuple[str, ...]:
        if self.mode == "single":
            return (self.recipe["train"]["domain"],)
        if self.mode == "two_stage":
            return ("rendered",) if it < self._stage1 else ("real",)
        return DOMAINS

    _stage1 = 0

    def plan(self, data: TrainData) -> Tuple[int, int]:
        """(iterations per epoch, total iterations) for ``data``."""
        t = self.recipe["train"]
        self._stage1 = self._stage1_iters(data)
        if self.mode == "single":
            ipe = data.num_batches(t["domain"])
        elif self.mode == "two_stage":
            ipe = data.num_batches("real")
        else:
            ipe = min(data.num_batches("rendered"), data.num_batches("real"))
        total = t["iterations"] if t["iterations"] is not None else t["epochs"] * ipe + self._stage1
        return ipe, int(total)

    def _position(self, it: int, data: TrainData, ipe: int) -> Tuple[int, int, Tuple[str, ...]]:
        """(epoch, batch index, domains) of iteration ``it``."""
        doms = self._step_domains(it)
        if self.mode == "two_stage" and it < self._stage1:
            n = data.num_batches("rendered")
            return 100_000 + it // n, it % n, doms
        j = it - self._stage1
        return j // ipe, j % ipe, doms

    # --------------------------------------------------------------------------------------
    # checkpoints
    # --------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume (see :mod:`harmonykit.train.checkpoint`)."""
        def sd(m: Optional[nn.Module]) -> Optional[Dict[str, torch.Tensor]]:
            return None if m is None else {k: v.detach().cpu() for k, v in m.state_dict().items()}

        return {
            "format": CHECKPOINT_FORMAT,
            "model": sd(self.model),
            "model_name": getattr(self.model, "architecture", self.recipe["model"]["name"]),
            "model_args": _plain(getattr(self.model, "model_args", {})),
            "ema": sd(self.ema.module) if self.ema is not None else None,
            "discriminator": sd(self.discriminator),
            "style_heads": {"in": sd(self.style_in), "out": sd(self.style_out)} if self.style_in is not None else None,
            "optimizer": {"generator": self.opt_g.state_dict(), "discriminator": self.opt_d.state_dict() if self.opt_d else None},
            "scheduler": {
                "generator": _plain(self.sched_g.state_dict()) if self.sched_g else None,
                "discriminator": _plain(self.sched_d.state_dict()) if self.sched_d else None,
            },
            "scaler": {"generator": self.scaler_g.state_dict(), "discriminator": self.scaler_d.state_dict()},
            "rng": get_rng_state(),
            "augment_rng": [g.get_state() for g in self._augment_generators()],
            "iteration": int(self.iteration),
            "best_metric": self.best_metric,
            "recipe": _plain(self.recipe),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (networks, optimisers, schedulers, scaler, RNG, iteration)."""
        self.model.load_state_dict(state["model"])
        for name, m in (("discriminator", self.discriminator),):
            if m is not None:
                if state.get(name) is None:
                    raise ValueError(f"checkpoint has no {name} but the recipe builds one")
                m.load_state_dict(state[name])
        if self.style_in is not None:
            if not state.get("style_heads"):
                raise ValueError("checkpoint has no style_heads but the recipe builds them")
            self.style_in.load_state_dict(state["style_heads"]["in"])
            self.style_out.load_state_dict(state["style_heads"]["out"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["optimizer"]["generator"])
        if self.opt_d is not None and state["optimizer"].get("discriminator") is not None:
            self.opt_d.load_state_dict(state["optimizer"]["discriminator"])
        for s, key in ((self.sched_g, "generator"), (self.sched_d, "discriminator")):
            if s is not None and (state.get("scheduler") or {}).get(key) is not None:
                s.load_state_dict(dict(state["scheduler"][key]))
        sc = state.get("scaler") or {}
        if sc.get("generator"):
            self.scaler_g.load_state_dict(sc["generator"])
        if sc.get("discriminator"):
            self.scaler_d.load_state_dict(sc["discriminator"])
        for g, st in zip(self._augment_generators(), state.get("augment_rng") or []):
            g.set_state(st)
        self.iteration = int(state["iteration"])
        self.best_metric = state.get("best_metric")
        set_rng_state(state.get("rng"))

    def save(self, path: Union[str, Path]) -> Optional[Path]:
        """Write a training checkpoint atomically (rank 0 only)."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: Union[str, Path]) -> None:
        state = load_checkpoint(path, map_location=self.device)
        self.load_state_dict(state)
        _logger.info("resumed from %s at iteration %d", path, self.iteration)

    def export_pretrained(self, directory: Union[str, Path]) -> Path:
        """An inference folder (``model.safetensors`` + ``config.json``) of the generator
        (the EMA weights when EMA is on)."""
        from harmonykit.hub import save_pretrained

        net = self.ema.module if self.ema is not None else self.model
        for attr in ("architecture", "model_args", "pretrained_cfg"):
            if hasattr(self.model, attr) and not hasattr(net, attr):
                setattr(net, attr, getattr(self.model, attr))
        return save_pretrained(net, directory, config_extra={"training_recipe": self.recipe.get("name")})

    # --------------------------------------------------------------------------------------
    # validation
    # --------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, data: TrainData) -> Dict[str, float]:
        """MSE / fMSE / PSNR (0-255 units, Samsung protocol: clamped, not quantised; mean over
        images) on the validation set, real branch, eval mode."""
        loader = data.val_loader()
        if loader is None:
            return {}
        net = self.ema.module if self.ema is not None else self.model
        was = net.training
        net.eval()
        sums = {"mse": 0.0, "fmse": 0.0, "psnr": 0.0}
        n = 0
        maxb = self.recipe["val"]["max_batches"]
        for i, batch in enumerate(loader):
            if maxb is not None and i >= maxb:
                break
            bt = _resize_batch(batch, self.recipe["val"]["image_size"], self.device)
            with self._autocast():
                if len(getattr(net, "domains", ())) > 1:
                    out = net(bt["composite"], bt["mask"], domain="real")
                else:
                    out = net(bt["composite"], bt["mask"])
            pred = out.image.float().clamp(0, 1) * 255
            gt = bt["real"].float() * 255
            m = bt["mask"].float()
            d2 = (pred - gt).pow(2)
            mse = d2.mean(dim=(1, 2, 3))
            fmse = (d2 * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3)) + 1e-6)
            peak = gt.amax(dim=(1, 2, 3))
            psnr = 10 * torch.log10(peak.pow(2) / (mse + 1e-6))
            sums["mse"] += float(mse.sum())
            sums["fmse"] += float(fmse.sum())
            sums["psnr"] += float(psnr.sum())
            n += pred.shape[0]
        net.train(was)
        return {k: v / max(n, 1) for k, v in sums.items()}

    # --------------------------------------------------------------------------------------
    # logging
    # --------------------------------------------------------------------------------------
    def _log_row(self, split: str, row: Dict[str, Any]) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        row = {"split": split, **row}
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        lg = self.recipe["log"]
        if lg["csv"]:
            path = self.run_dir / f"{split}.csv"
            new = not path.exists()
            with open(path, "a", newline="") as f:
                if split not in self._csv_writers:
                    self._csv_writers[split] = list(row.keys()) if new else _csv_header(path) or list(row.keys())
                w = csv.DictWriter(f, fieldnames=self._csv_writers[split], extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        if lg["tensorboard"]:
            if self._tb is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.run_dir / "tb"))
                except Exception:  # noqa: BLE001 - tensorboard is optional
                    self._tb = False
            if self._tb:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and k != "iteration":
                        self._tb.add_scalar(f"{split}/{k}", v, row.get("iteration", self.iteration))

    # --------------------------------------------------------------------------------------
    # the loop
    # --------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`fit` to save and return after the current iteration."""
        self._stop = True

    def fit(
        self,
        data: TrainData,
        resume: Optional[Union[str, Path]] = None,
        max_seconds: Optional[float] = None,
        progress: Optional[bool] = None,
    ) -> str:
        """Train to the end of the recipe.

        Args:
            resume: a training checkpoint to continue from.
            max_seconds: wall-clock budget; the run ends after the iteration that crosses it,
                like a finished run (validation, ``last.pth``, ``pretrained/``).
            progress: show the tqdm bar (default: unless ``HARMONYKIT_DISABLE_PROGRESS=1``).

        Returns ``"done"``, ``"time_budget"`` (stopped by ``max_seconds``) or ``"interrupted"``
        (Ctrl-C / SIGTERM / :meth:`request_stop`: the current iteration finishes and ``last.pth``
        is written). A NaN / inf loss raises :class:`NonFiniteLossError`; the last good
        checkpoint is left as it was."""
        ipe, total = self.plan(data)
        total_epochs = max(1, math.ceil(total / max(ipe, 1)))
        self.build_schedulers(ipe, total_epochs)
        if resume is not None:
            self.load(resume)
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            from harmonykit.train.recipe import dump_recipe

            dump_recipe(self.recipe, self.run_dir / "recipe.yaml")
        ck = self.recipe["checkpoint"]
        lg = self.recipe["log"]
        val_int = self.recipe["val"]["interval"]
        old_handlers = self._install_signals()
        iters: Dict[str, Tuple[int, Iterator]] = {}
        bar = None
        show = progress_enabled() if progress is None else progress
        if self.dist.is_main and show:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.iteration, desc=self.recipe["name"], dynamic_ncols=True)
        t0, seen, running = time.perf_counter(), 0, {}
        deadline = None if max_seconds is None else t0 + float(max_seconds)
        status = "done"
        try:
            while self.iteration < total:
                it = self.iteration
                epoch, bidx, doms = self._position(it, data, ipe)
                batches = {}
                for d in doms:
                    cur = iters.get(d)
                    if cur is None or cur[0] != epoch:
                        cur = (epoch, data.batches(d, epoch, bidx))
                        iters[d] = cur
                    batches[d] = next(cur[1])
                logs = self.train_step(batches)
                self.iteration = it + 1
                seen += sum(int(b["composite"].shape[0]) for b in batches.values()) * self.dist.world_size
                self._sched_step(ipe)
                vals = {k: float(v) for k, v in logs.items()}
                for k, v in vals.items():
                    running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
                ips = seen / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.update(1)
                    show = {k: f"{running[k]:.3g}" for k in ("G_total", "D_loss") if k in running}
                    show["img/s"] = f"{ips:.1f}"
                    bar.set_postfix(show)
                if lg["interval"] and (self.iteration % lg["interval"] == 0 or self.iteration == total):
                    if self.dist.enabled:
                        vals = {k: float(all_reduce_mean(v, self.dist)) for k, v in logs.items()}
                    lr = self.opt_g.param_groups[0]["lr"]
                    self._log_row("train", {"iteration": self.iteration, "epoch": epoch, "lr": lr, **vals, "images_per_s": ips})
                if val_int and self.iteration % val_int == 0 and self.iteration < total:
                    self._run_validation(data)
                if ck["interval"] and self.iteration % ck["interval"] == 0 and self.run_dir is not None:
                    self._save_last()
                if ck["keep_every"] and self.iteration % ck["keep_every"] == 0 and self.run_dir is not None:
                    self.save(self.run_dir / f"ckpt_{self.iteration:07d}.pth")
                out_of_time = deadline is not None and time.perf_counter() >= deadline
                if out_of_time:
                    self._stop = True
                if self._sync_stop():
                    status = "time_budget" if out_of_time else "interrupted"
                    break
        finally:
            self._restore_signals(old_handlers)
            if bar is not None:
                bar.close()
        finished = status in ("done", "time_budget")
        if self.run_dir is not None:
            if finished:
                self._run_validation(data)
            self._save_last()
            if finished and self.dist.is_main:
                self.export_pretrained(self.run_dir / "pretrained")
        if self._tb:
            self._tb.close()
        return status

    def _sched_step(self, ipe: int) -> None:
        for s in (self.sched_g, self.sched_d):
            if s is None:
                continue
            if self.recipe["sched"]["step_on_epochs"]:
                if self.iteration % ipe == 0:
                    s.step(self.iteration // ipe)
            else:
                s.step_update(num_updates=self.iteration)

    def _save_last(self) -> None:
        assert self.run_dir is not None
        self.save(self.run_dir / "last.pth")
        _barrier(self.dist)

    def _run_validation(self, data: TrainData) -> None:
        metrics: Dict[str, float] = {}
        if self.dist.is_main:
            metrics = self.validate(data)
        _barrier(self.dist)
        if not metrics:
            return
        self._log_row("val", {"iteration": self.iteration, **metrics})
        _logger.info("iteration %d: val %s", self.iteration, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        key = self.recipe["val"]["metric"]
        v = metrics[key]
        better = self.best_metric is None or (v > self.best_metric if key == "psnr" else v < self.best_metric)
        if better:
            self.best_metric = v
            if self.run_dir is not None:
                self.save(self.run_dir / "best.pth")

    def _sync_stop(self) -> bool:
        if not self.dist.enabled:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0])
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _install_signals(self) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: Dict[int, Any] = {}

        def handler(signum, frame):  # noqa: ARG001
            if self._stop:  # second press: stop now
                raise KeyboardInterrupt
            _logger.warning("signal %d: finishing the current iteration, saving and exiting (again to abort)", signum)
            self._stop = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover
                pass
        return old

    @staticmethod
    def _restore_signals(old: Mapping[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)


# ------------------------------------------------------------------------------------------
def _resize_batch(batch: Mapping[str, Any], size: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """``composite``, ``real``, ``mask`` as ``(B, C, size, size)`` on ``device`` (bilinear resize
    of each sample whose size differs; lists of differently sized samples are allowed)."""
    import torch.nn.functional as F

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


def _mode_slots(mode: str, domain: str, has_d: bool, has_heads: bool) -> set:
    if mode == "single":
        return {f"recon_{domain}"}
    if mode in ("fusion", "two_stage"):
        return {"recon_rendered", "recon_real"}
    slots = {"recon_rendered", "recon_real"}
    if has_d:
        slots |= {"discriminator", "adversarial"}
    if has_heads:
        slots |= {"style_in", "style_out", "consistency", "entropy"}
    return slots


def _auto_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _opt_takes(opt: str, arg: str) -> bool:
    name = opt.lower().split("_")[-1]
    if arg == "betas":
        return name in ("adam", "adamw", "nadam", "radam", "adamax", "lamb", "adabelief", "nadamw", "adan", "lion", "adopt", "adamp")
    if arg == "eps":
        return name not in ("sgd", "momentum", "lion", "sgdp", "lars", "nesterov")
    return False


def _plain(obj: Any) -> Any:
    """Tuples -> lists, recursively (checkpoints hold only tensors and plain types)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _csv_header(path: Path) -> Optional[List[str]]:
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f))
    except (OSError, StopIteration):
        return None


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
