"""One training iteration.

One CharmNet iteration follows the official ``DAstyleModel.optimize_parameters`` order:

1. forward the source batch (its own branch) and the target batch (its own branch);
2. one discriminator step on the detached encoder features ``f`` (hinge loss);
3. one step of the generator + both style heads (one optimiser) on the weighted total loss,
   with the adversarial term evaluated by the *updated* discriminator and the same forward graph.

The other modes (``single``, ``fusion``, ``two_stage``) take one reconstruction step; ``single``
with an image discriminator (DoveNet, RainNet) takes the pix2pix order of
:func:`image_gan_step` (D step on the detached output and the target, then the generator step
with the updated D). Every term
is computed from named tensors as :data:`harmonykit.train.loss_terms.LOSS_TERMS` says; this
module only produces the tensors and runs the optimisers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from harmonykit.normalization import normalize
from harmonykit.train.data import DomainPlan
from harmonykit.train.distributed import DistInfo, all_reduce_grads
from harmonykit.train.loss_terms import call_term, term_of

__all__ = [
    "NonFiniteLossError", "StepModules", "charmnet_step", "reconstruction_step", "image_gan_step", "check_finite", "optimizer_step",
]

RECON_KEYS = ("composite", "real", "mask")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; ``term`` names it."""

    def __init__(self, term: str, value: float, iteration: int) -> None:
        super().__init__(f"loss term {term!r} is {value} at iteration {iteration}")
        self.term, self.value, self.iteration = term, value, iteration


@dataclass
class StepModules:
    """What one iteration touches (owned by the :class:`~harmonykit.train.trainer.Trainer`).

    Attributes:
        forward: the (possibly compiled) generator, ``forward(composite, mask, domain=...)``.
        losses: active slot -> (loss module, weight), in :data:`LOSS_TERMS` order.
        plan: data domains -> model branches.
    """

    forward: Callable[..., Any]
    model: nn.Module
    losses: Dict[str, Tuple[nn.Module, float]]
    plan: DomainPlan
    opt_g: torch.optim.Optimizer
    scaler_g: Any
    discriminator: Optional[nn.Module] = None
    style_in: Optional[nn.Module] = None
    style_out: Optional[nn.Module] = None
    opt_d: Optional[torch.optim.Optimizer] = None
    scaler_d: Any = None
    amp_dtype: Optional[torch.dtype] = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: DistInfo = field(default_factory=DistInfo)
    clip_grad: Optional[float] = None
    clip_mode: str = "norm"
    composite_output: bool = False

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def g_params(self) -> List[nn.Parameter]:
        ps = list(self.model.parameters())
        for m in (self.style_out, self.style_in):
            if m is not None:
                ps += list(m.parameters())
        return ps

    def run(self, batch: Mapping[str, Any], domain: str):
        """The generator on one data domain's batch (routed to its model branch)."""
        return self.forward(batch["composite"], batch["mask"], domain=self.plan.branches[domain])


def check_finite(terms: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN / inf term (one sync when all are finite)."""
    if not terms:
        return
    vals = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
    if bool(torch.isfinite(vals).all()):
        return
    for name, v in terms.items():
        if not bool(torch.isfinite(v.detach()).all()):
            raise NonFiniteLossError(name, float(v.detach().float()), iteration)


def optimizer_step(m: StepModules, opt, scaler, loss: torch.Tensor, params: List[nn.Parameter]) -> None:
    """backward (scaled), DDP gradient all-reduce, optional clipping, step."""
    scaler.scale(loss).backward()
    all_reduce_grads(params, m.dist)
    if m.clip_grad is not None:
        from timm.utils import dispatch_clip_grad

        scaler.unscale_(opt)
        dispatch_clip_grad(params, m.clip_grad, mode=m.clip_mode)
    scaler.step(opt)
    scaler.update()


def _target_fn(m: "StepModules") -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's map from a [0, 1] target to the space of ``.image_normalized``
    (:meth:`Harmonizer.normalize_target`: ImageNet for iDIH, [-1, 1] for the pix2pix family, ...)."""
    net = getattr(m.model, "module", m.model)
    return getattr(net, "normalize_target", normalize)


def _prediction(out: Any, batch: Mapping[str, Any], to_target: Callable[[torch.Tensor], torch.Tensor], composite: bool) -> torch.Tensor:
    """The output in the model's output space; ``composite``: pasted over the (normalised)
    composite's background, ``out * mask + composite * (1 - mask)`` (RainNet's ``attentioned``)."""
    pred = out.image_normalized
    if not composite:
        return pred
    mask = batch["mask"].to(pred.dtype)
    return pred * mask + to_target(batch["composite"]).to(pred.dtype) * (1 - mask)


def _recon_tensors(
    tensors: Dict[str, Any],
    domain: str,
    out: Any,
    batch: Mapping[str, Any],
    to_target: Callable[[torch.Tensor], torch.Tensor] = normalize,
    composite: bool = False,
) -> None:
    pred = _prediction(out, batch, to_target, composite)
    tensors[f"pred/{domain}"] = pred
    tensors[f"target/{domain}"] = to_target(batch["real"]).to(pred.dtype)
    tensors[f"mask/{domain}"] = batch["mask"]
    tensors[f"output/{domain}"] = out
    tensors[f"real/{domain}"] = batch["real"]


def _active(m: StepModules):
    """(slot, term, domain, loss module) of every active slot, in table order."""
    for slot, (fn, _) in m.losses.items():
        term, dom = term_of(slot, m.plan.domains)
        yield slot, term, dom, fn


def _needs(m: StepModules, tensor: str) -> bool:
    """Whether an active term takes the step tensor ``tensor``."""
    return any(tensor in {n.format(domain=d) if d else n for n in t.inputs} for _, t, d, _ in _active(m))


def _terms(m: StepModules, phase: str, tensors: Mapping[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Every active term of ``phase`` whose inputs the step produced, in table order:
    ``(values by slot, values and parts by log name)``."""
    values: Dict[str, torch.Tensor] = {}
    logged: Dict[str, torch.Tensor] = {}
    for slot, term, dom, fn in _active(m):
        if term.phase != phase:
            continue
        if not all((n.format(domain=dom) if dom else n) in tensors for n in term.inputs):
            continue  # e.g. the other domain's reconstruction in a two-stage iteration
        value, parts = call_term(fn, slot, term, dom, tensors)
        values[slot] = value
        logged[term.log_name or slot] = value
        logged.update(parts)
    return values, logged


def _weighted_total(m: StepModules, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return sum(m.losses[k][1] * v for k, v in values.items())


def _detached(t: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in t.items()}


def charmnet_step(
    m: StepModules, b: Mapping[str, Mapping[str, Any]], iteration: int, after_d_step: Optional[Callable[[], None]] = None
) -> Dict[str, torch.Tensor]:
    """The CharmNet iteration (module docstring) on ``{source: batch, target: batch}``."""
    src, tgt = m.plan.source, m.plan.target
    logs: Dict[str, torch.Tensor] = {}
    with m.autocast():
        out = {src: m.run(b[src], src), tgt: m.run(b[tgt], tgt)}
    D = m.discriminator
    # --- discriminator step on detached features ---
    if D is not None and m.opt_d is not None:
        D.requires_grad_(True)
        m.opt_d.zero_grad(set_to_none=True)
        with m.autocast():
            tensors = {"D_detached/source": D(out[src].features_in.detach()), "D_detached/target": D(out[tgt].features_in.detach())}
            d_values, d_logged = _terms(m, "discriminator", tensors)
        check_finite(d_logged, iteration)
        optimizer_step(m, m.opt_d, m.scaler_d, _weighted_total(m, d_values), list(D.parameters()))
        logs.update(_detached(d_logged))
        D.requires_grad_(False)
    if after_d_step is not None:
        after_d_step()
    # --- generator + style heads step ---
    m.opt_g.zero_grad(set_to_none=True)
    with m.autocast():
        tensors: Dict[str, Any] = {}
        for d in (src, tgt):
            _recon_tensors(tensors, d, out[d], b[d], _target_fn(m), m.composite_output)
        if D is not None and _needs(m, "D/source"):
            tensors["D/source"] = D(out[src].features_in)
        if m.style_in is not None:
            # official call order: P_in(f_src), P_out(g_src), P_in(f_tgt), P_out(g_tgt)
            tensors["P_in/source"] = m.style_in(out[src].features_in).float()
            tensors["P_out/source"] = m.style_out(out[src].features_out).float()
            tensors["P_in/target"] = m.style_in(out[tgt].features_in).float()
            tensors["P_out/target"] = m.style_out(out[tgt].features_out).float()
            for key in ("style_soft", "style"):
                if key in b[src]:
                    tensors[f"{key}/source"] = b[src][key]
        values, logged = _terms(m, "generator", tensors)
    total = _weighted_total(m, values)
    check_finite({**values, "G_total": total}, iteration)
    optimizer_step(m, m.opt_g, m.scaler_g, total, m.g_params())
    if D is not None:
        D.requires_grad_(True)
    logs.update(_detached(logged))
    logs["G_total"] = total.detach()
    return logs


def reconstruction_step(
    m: StepModules, b: Mapping[str, Mapping[str, Any]], domains: Sequence[str], iteration: int
) -> Dict[str, torch.Tensor]:
    """One generator step on the reconstruction terms of ``domains``.

    ``fusion`` runs one forward on the concatenation of the domains' batches (the target
    domain's branch); ``single`` / ``two_stage`` run each domain on its own branch.
    """
    m.opt_g.zero_grad(set_to_none=True)
    tensors: Dict[str, Any] = {}
    with m.autocast():
        if m.plan.mode == "fusion":
            cat = {k: torch.cat([b[d][k] for d in domains]) for k in RECON_KEYS}
            out = m.run(cat, m.plan.target)
            start = 0
            for d in domains:
                sl = slice(start, start + b[d]["composite"].shape[0])
                start = sl.stop
                part = type(out)(image=out.image[sl], image_normalized=out.image_normalized[sl])
                _recon_tensors(tensors, d, part, {k: cat[k][sl] for k in RECON_KEYS}, _target_fn(m), m.composite_output)
        else:
            for d in domains:
                if _needs(m, f"pred/{d}") or _needs(m, f"output/{d}"):
                    _recon_tensors(tensors, d, m.run(b[d], d), b[d], _target_fn(m), m.composite_output)
        values, logged = _terms(m, "generator", tensors)
    total = _weighted_total(m, values)
    check_finite({**values, "G_total": total}, iteration)
    optimizer_step(m, m.opt_g, m.scaler_g, total, m.g_params())
    logs = _detached(logged)
    logs["G_total"] = total.detach()
    return logs


def image_gan_step(m: StepModules, b: Mapping[str, Mapping[str, Any]], domain: str, iteration: int) -> Dict[str, torch.Tensor]:
    """One pix2pix-style iteration with an image discriminator (official DoveNet / RainNet
    ``optimize_parameters``): forward; D step on ``D(fake.detach(), mask)`` vs ``D(target, mask)``
    plus the gradient penalty; then, D frozen, one generator step on the reconstruction and
    ``D(fake, mask)``. ``fake`` is the output in the model's output space (composited over the
    input's background when ``train.composite_output``), ``target`` the normalised real image."""
    D = m.discriminator
    assert D is not None and m.opt_d is not None
    batch = b[domain]
    to_t = _target_fn(m)
    logs: Dict[str, torch.Tensor] = {}
    with m.autocast():
        out = m.run(batch, domain)
        fake = _prediction(out, batch, to_t, m.composite_output)
        target = to_t(batch["real"]).to(fake.dtype)
    mask = batch["mask"].to(fake.dtype)
    # --- discriminator ---
    D.requires_grad_(True)
    m.opt_d.zero_grad(set_to_none=True)
    with m.autocast():
        tensors: Dict[str, Any] = {
            "Dimg_detached/fake": D(fake.detach(), mask), "Dimg/real": D(target, mask),
            "D_net": D, "target_image": target, "fake_image": fake.detach(), "mask_image": mask,
        }
        d_values, d_logged = _terms(m, "discriminator", tensors)
    check_finite(d_logged, iteration)
    optimizer_step(m, m.opt_d, m.scaler_d, _weighted_total(m, d_values), list(D.parameters()))
    logs.update(_detached(d_logged))
    D.requires_grad_(False)
    # --- generator ---
    m.opt_g.zero_grad(set_to_none=True)
    with m.autocast():
        tensors = {}
        _recon_tensors(tensors, domain, out, batch, to_t, m.composite_output)
        tensors["Dimg/fake"] = D(fake, mask)
        with torch.no_grad():
            # the official backward_G also scores the real image (unused by the loss); in train
            # mode that forward advances the spectral-norm power iteration of every D layer
            D(target, mask)
        values, logged = _terms(m, "generator", tensors)
    total = _weighted_total(m, values)
    check_finite({**values, "G_total": total}, iteration)
    optimizer_step(m, m.opt_g, m.scaler_g, total, m.g_params())
    D.requires_grad_(True)
    logs.update(_detached(logged))
    logs["G_total"] = total.detach()
    return logs
