"""The trainer: builds every component of a resolved recipe and runs the loop.

The parts live in their own modules; :class:`Trainer` orchestrates them:

- :mod:`harmonykit.train.data`: training data (:class:`TrainData`) and domain routing
  (:class:`DomainPlan`: the data domains of ``train.mode`` and the model branch each runs);
- :mod:`harmonykit.train.loss_terms`: the loss terms, declared once (schema, checks, step);
- :mod:`harmonykit.train.step`: one iteration (the official CharmNet order, or one
  reconstruction step for ``single`` / ``fusion`` / ``two_stage``);
- :mod:`harmonykit.train.validation`: validation through :mod:`harmonykit.eval.metrics`;
- :mod:`harmonykit.train.log`: ``log.jsonl``, CSV and TensorBoard rows;
- :mod:`harmonykit.train.checkpoint` / :mod:`harmonykit.train.distributed`: atomic checkpoints
  and torchrun helpers.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from harmonykit.registry import AUGMENTATIONS, DISCRIMINATORS, LOSSES, STYLE_HEADS
from harmonykit.train.checkpoint import CHECKPOINT_FORMAT, get_rng_state, load_training_checkpoint, save_checkpoint, set_rng_state
from harmonykit.train.cpu_malloc import keep_freed_memory
from harmonykit.train.data import DomainPlan, TrainData, component_kwargs, worker_augmentation
from harmonykit.train.distributed import DistInfo, all_reduce_mean, broadcast_module
from harmonykit.train.log import RunLogger, RunningMean
from harmonykit.train.loss_terms import active_slots
from harmonykit.train.step import NonFiniteLossError, StepModules, charmnet_step, image_gan_step, reconstruction_step
from harmonykit.train.validation import higher_is_better, validate
from harmonykit.utils import progress_enabled, resolve_device

__all__ = ["Trainer", "TrainData", "DomainPlan", "NonFiniteLossError", "build_schedulers"]

_logger = logging.getLogger(__name__)


class Trainer:
    """Builds every component of a resolved recipe and trains it.

    Args:
        recipe: a resolved recipe (:func:`harmonykit.train.recipe.load_recipe`).
        run_dir: where logs and checkpoints go (``None``: write nothing).
        device: overrides ``train.device``.
        dist_info: the process group (``torchrun``); default single process.

    Main entry points: :meth:`train_step` (one iteration on ``{domain: batch}``), :meth:`fit`
    (the loop with logging, validation and checkpoints), :meth:`save` / :meth:`load`
    (training checkpoints). ``domain_plan`` (:class:`DomainPlan`) says which data domains the mode
    reads and which model branch each runs.
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
        self.device = torch.device(device if device is not None else resolve_device(t["device"]))
        if self.dist.enabled and self.device.type == "cuda":
            from harmonykit.train.distributed import cuda_index

            self.device = torch.device("cuda", cuda_index(self.dist.local_rank))
        if self.device.type == "cpu":
            keep_freed_memory()  # reuse freed activation buffers instead of re-faulting them every step
        if recipe["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(recipe["seed"])

        # --- networks ---
        mspec = dict(recipe["model"])
        name = mspec.pop("name")
        ckpt = mspec.pop("checkpoint_path", None)
        self.model: nn.Module = create_model(name, checkpoint_path=ckpt, **mspec)
        self.domain_plan = DomainPlan.for_model(recipe, self.model)
        self.discriminator: Optional[nn.Module] = None
        self.style_in: Optional[nn.Module] = None
        self.style_out: Optional[nn.Module] = None
        if self.mode == "charmnet":
            C = int(self.model.feature_channels)
            if recipe["discriminator"] is not None:
                spec = recipe["discriminator"]
                self.discriminator = DISCRIMINATORS.create(spec["name"], in_channels=C, **component_kwargs(spec))
            if recipe["style_heads"] is not None:
                spec = recipe["style_heads"]
                self.style_in = STYLE_HEADS.create(spec["name"], in_channels=C, **component_kwargs(spec))
                self.style_out = STYLE_HEADS.create(spec["name"], in_channels=C, **component_kwargs(spec))
        elif self.mode == "single" and recipe["discriminator"] is not None and _active(recipe["loss"].get("image_discriminator")):
            # image GAN (DoveNet / RainNet): the discriminator reads 3-channel images and the mask
            spec = recipe["discriminator"]
            self.discriminator = DISCRIMINATORS.create(spec["name"], in_channels=3, **component_kwargs(spec))
        self._heads_checked = self.style_in is None
        size = _train_image_size(recipe)
        if size is not None:
            self.check_style_heads(size, size)
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

        # --- losses (slot -> (module, weight)), in LOSS_TERMS order; inactive terms are dropped ---
        built = {"discriminator": self.discriminator is not None, "style_heads": self.style_in is not None}
        self.losses: Dict[str, Tuple[nn.Module, float]] = {}
        for slot in active_slots(self.mode, self.domain_plan.domains, recipe["loss"], built):
            spec = recipe["loss"][slot]
            kw = {k: v for k, v in spec.items() if k not in ("name", "weight")}
            self.losses[slot] = (LOSSES.create(spec["name"], **kw).to(self.device), float(spec.get("weight", 1.0)))
        if self.discriminator is not None and not any(k in self.losses for k in ("discriminator", "image_discriminator")):
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
            if recipe["data"].get("crop_in_workers") and recipe["data"]["kind"] == "datasets":
                # the crop runs in the DataLoader workers (TrainData); the rest runs here, on the device
                self.augment = worker_augmentation(recipe)[1]
            else:
                spec = recipe["data"]["augmentation"]
                self.augment = AUGMENTATIONS.create(spec["name"], **component_kwargs(spec))

        self.iteration = 0
        self.best_metric: Optional[float] = None
        self._stop = False
        lg = recipe["log"]
        self.logger = RunLogger(self.run_dir, csv=lg["csv"], tensorboard=lg["tensorboard"], enabled=self.dist.is_main)

    # --------------------------------------------------------------------------------------
    def _modules(self) -> List[nn.Module]:
        return [m for m in (self.model, self.discriminator, self.style_in, self.style_out) if m is not None]

    def _step_modules(self) -> StepModules:
        o = self.recipe["optim"]
        return StepModules(
            forward=self._fwd, model=self.model, losses=self.losses, plan=self.domain_plan, opt_g=self.opt_g,
            scaler_g=self.scaler_g, discriminator=self.discriminator, style_in=self.style_in, style_out=self.style_out,
            opt_d=self.opt_d, scaler_d=self.scaler_d, amp_dtype=self.amp_dtype, device=self.device, dist=self.dist,
            clip_grad=o["clip_grad"], clip_mode=o["clip_mode"], composite_output=self.recipe["train"]["composite_output"],
        )

    def check_style_heads(self, height: int, width: int) -> None:
        """Raise ``ValueError`` before training when the style heads cannot map the model's
        split features of ``height x width`` training images to ``(B, K)`` logits (the official
        MaxPool(4) head only fits 16-31 px features)."""
        self._heads_checked = True
        if self.style_in is None:
            return
        red = getattr(self.model, "feature_reduction", None)
        if red is None:
            return
        h, w = height // int(red), width // int(red)
        head = self.style_in
        was = head.training
        head.eval()
        try:
            with torch.no_grad():
                p = next(head.parameters(), None)
                x = torch.zeros(1, int(self.model.feature_channels), h, w,
                                device=p.device if p is not None else None, dtype=p.dtype if p is not None else None)
                shape: Tuple[int, ...] = tuple(head(x).shape)
                err = None
        except RuntimeError as e:  # features too small for the pooling
            shape, err = (), str(e).splitlines()[0]
        finally:
            head.train(was)
        if len(shape) == 2:
            return
        pool = getattr(head, "pool", None)
        got = f"gives logits of shape {shape}" if err is None else f"fails ({err})"
        raise ValueError(
            f"style_heads: {self.recipe['style_heads']['name']!r}"
            f"{f' (pool={pool})' if pool is not None else ''} {got} on the {h}x{w} px split features of "
            f"model {self.recipe['model']['name']!r} (split_depth {getattr(self.model, 'split_depth', '?')}, stride {red}) "
            f"for {height}x{width} training images; it needs (B, K). The official MaxPool(4) head fits 16-31 px "
            f"features only: set style_heads.pool: global (a global max pool, any size) or change the image size"
        )

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
        """Schedulers for both optimisers (:func:`build_schedulers`)."""
        self.sched_g, self.sched_d = build_schedulers(self.recipe["sched"], self.opt_g, self.opt_d, iters_per_epoch, total_epochs)

    # --------------------------------------------------------------------------------------
    # one iteration
    # --------------------------------------------------------------------------------------
    def _to_device(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        from harmonykit.data.collate import batch_to_device, images_to_float

        # uint8 crops from the workers cross to the device as bytes and become float there
        out = images_to_float(batch_to_device(dict(batch), self.device))
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

    def _set_train(self) -> None:
        for m in self._modules():
            m.train()
        if self.recipe["train"]["freeze_bn"]:
            for m in self._modules():
                for mod in m.modules():
                    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                        mod.eval()

    def train_step(
        self,
        batches: Mapping[str, Mapping[str, Any]],
        after_d_step: Optional[Callable[["Trainer"], None]] = None,
    ) -> Dict[str, torch.Tensor]:
        """One training iteration on ``{domain: batch}`` (only the domains this iteration
        uses are read: :meth:`_step_domains`). Returns the detached loss terms: unweighted
        terms under their slot names, the parts of terms that have them (``D_loss``,
        ``D_<part>``, ``entropy_in``, ``entropy_out``) and the weighted total ``G_total``.

        ``after_d_step(trainer)`` runs right after the discriminator update (for tests).
        Raises :class:`NonFiniteLossError` before any optimiser step on a NaN / inf term.
        """
        self._set_train()
        doms = self._step_domains(self.iteration)
        missing = [d for d in doms if d not in batches]
        if missing:
            raise KeyError(f"train_step: iteration {self.iteration} of train.mode={self.mode} needs batches of {list(doms)}, "
                           f"missing {missing}")
        b = {d: self._to_device(batches[d]) for d in doms}
        first = b[doms[0]]["composite"]
        if not self._heads_checked and isinstance(first, torch.Tensor):
            self.check_style_heads(*first.shape[-2:])
        m = self._step_modules()
        if self.mode == "charmnet":
            hook = (lambda: after_d_step(self)) if after_d_step is not None else None
            logs = charmnet_step(m, b, self.iteration, hook)
        elif self.discriminator is not None:
            logs = image_gan_step(m, b, doms[0], self.iteration)
        else:
            logs = reconstruction_step(m, b, doms, self.iteration)
        if self.ema is not None:
            self.ema.update(self.model, step=self.iteration + 1)
        return logs

    # --------------------------------------------------------------------------------------
    # schedule of iterations (DomainPlan)
    # --------------------------------------------------------------------------------------
    def _step_domains(self, it: int) -> Tuple[str, ...]:
        return self.domain_plan.step_domains(it)

    def plan(self, data: TrainData) -> Tuple[int, int]:
        """(iterations per epoch, total iterations) for ``data``."""
        self.domain_plan = self.domain_plan.with_schedule(self.recipe, data)
        return self.domain_plan.iterations(self.recipe, data)

    def _position(self, it: int, data: TrainData, ipe: int) -> Tuple[int, int, Tuple[str, ...]]:
        return self.domain_plan.position(it, data, ipe)

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
        state = load_training_checkpoint(path, map_location=self.device)
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
    def validate(self, data: TrainData) -> Dict[str, float]:
        """Mean MSE / fMSE / PSNR / fPSNR (0-255 units, ``val.protocol`` of
        :mod:`harmonykit.eval.metrics`) of the generator (EMA weights when on), default branch,
        eval mode, on the validation set resized to ``val.image_size``."""
        v = self.recipe["val"]
        net = self.ema.module if self.ema is not None else self.model
        return validate(net, data.val_loader(), v["image_size"], self.device, v["protocol"], v["max_batches"],
                        self._step_modules().autocast)

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
        self.model.has_trained_weights = True  # trained here: no "random weights" guard downstream
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
        t0, seen, running = time.perf_counter(), 0, RunningMean()
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
                running.update(vals)
                ips = seen / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.update(1)
                    show = {k: f"{running.values[k]:.3g}" for k in ("G_total", "D_loss") if k in running.values}
                    show["img/s"] = f"{ips:.1f}"
                    bar.set_postfix(show)
                if lg["interval"] and (self.iteration % lg["interval"] == 0 or self.iteration == total):
                    if self.dist.enabled:
                        vals = {k: float(all_reduce_mean(v, self.dist)) for k, v in logs.items()}
                    lr = self.opt_g.param_groups[0]["lr"]
                    self.logger.row("train", {"iteration": self.iteration, "epoch": epoch, "lr": lr, **vals, "images_per_s": ips}, self.iteration)
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
        self.logger.close()
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
        self.logger.row("val", {"iteration": self.iteration, **metrics}, self.iteration)
        _logger.info("iteration %d: val %s", self.iteration, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        key = self.recipe["val"]["metric"]
        v = metrics[key]
        better = self.best_metric is None or (v > self.best_metric if higher_is_better(key) else v < self.best_metric)
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
def build_schedulers(
    s: Mapping[str, Any], opt_g: torch.optim.Optimizer, opt_d: Optional[torch.optim.Optimizer], iters_per_epoch: int, total_epochs: int
) -> Tuple[Any, Any]:
    """Schedulers ``(generator, discriminator)`` from the recipe's ``sched`` section
    (:func:`harmonykit.train.schedulers.create_scheduler`: ``none`` keeps the lr constant,
    ``multistep`` decays at exactly the milestones, as torch's ``MultiStepLR``)."""
    from harmonykit.train.schedulers import create_scheduler

    sched_g = create_scheduler(opt_g, s, iters_per_epoch, total_epochs)
    sched_d = create_scheduler(opt_d, s, iters_per_epoch, total_epochs) if opt_d is not None else None
    return sched_g, sched_d


def _train_image_size(recipe: Mapping[str, Any]) -> Optional[int]:
    """The square training image size when the recipe fixes it (synthetic data, or an
    augmentation with a ``size``); ``None``: known at the first batch."""
    d = recipe["data"]
    if d["kind"] == "synthetic":
        return int(d["synthetic"]["image_size"])
    size = (d["augmentation"] or {}).get("size")
    return int(size) if isinstance(size, int) else None


def _active(spec: Optional[Mapping[str, Any]]) -> bool:
    return spec is not None and float(spec.get("weight", 1.0)) != 0.0


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


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
