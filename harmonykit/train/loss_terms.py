"""The loss terms of every training mode, declared once.

:data:`LOSS_TERMS` is the one table the rest of the trainer reads:

- the recipe schema's ``loss:`` section (:func:`harmonykit.train.recipe.build_schema`: one slot
  per term, per-domain terms expanded once per data domain, the defaults below);
- the recipe consistency check (:func:`check_loss_components`: a term whose network is not
  configured, or a configured network that no term trains);
- the trainer (:func:`active_slots`: the slots a mode uses) and the step
  (:func:`call_term`: which named tensors each term takes, in which phase, how it is logged).

Tensor names are role based: ``source`` is the first data domain (the one with style labels:
the RdHarmony renders in the paper), ``target`` the last (the real photos); ``{domain}`` is every
data domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = ["LossTerm", "LOSS_TERMS", "expand_slots", "term_of", "active_slots", "check_loss_components", "call_term"]


@dataclass(frozen=True)
class LossTerm:
    """One term of the training objective.

    Attributes:
        slot: key under ``loss:`` in a recipe; ``{domain}`` expands to every data domain.
        loss: the default ``LOSSES`` entry; ``weight`` and ``kwargs`` its default weight / args.
        inputs: names of the step tensors the loss is called with (``{domain}`` as in ``slot``).
        modes: the ``train.mode`` values that use the term.
        needs: the recipe component (``discriminator`` / ``style_heads``) the term reads;
            ``None``: only the model.
        trains: the component this term is the only loss of (the term may not be null while
            the component is configured).
        phase: ``"generator"`` (the G + heads optimiser) or ``"discriminator"``.
        log_name: the log key of the unweighted value (default: the slot); a loss with a
            ``parts()`` method also logs each part as ``log_prefix + part``.
        default_on: ``False``: the slot is null unless a recipe names a loss for it (the terms
            of one model family: image GAN, intrinsic decomposition, ...).
    """

    slot: str
    loss: str
    weight: float
    inputs: Tuple[str, ...]
    modes: Tuple[str, ...] = ("charmnet",)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs: Optional[str] = None
    trains: Optional[str] = None
    phase: str = "generator"
    log_name: Optional[str] = None
    log_prefix: str = ""
    help: str = ""
    default_on: bool = True

    @property
    def per_domain(self) -> bool:
        return "{domain}" in self.slot


ALL_MODES = ("charmnet", "single", "fusion", "two_stage")
RECON_MODES = ("single", "fusion", "two_stage")

LOSS_TERMS: Tuple[LossTerm, ...] = (
    LossTerm("recon_{domain}", "fn_mse", 10.0, ("pred/{domain}", "target/{domain}", "mask/{domain}"), ALL_MODES,
             {"min_area": 100.0}, help="reconstruction of the {domain} batch (normalised output vs normalised real)"),
    LossTerm("discriminator", "hinge_d", 1.0, ("D_detached/source", "D_detached/target"), needs="discriminator",
             trains="discriminator", phase="discriminator", log_name="D_loss", log_prefix="D_",
             help="discriminator on detached encoder features f (source vs target)"),
    LossTerm("adversarial", "hinge_g", 1.0, ("D/source",), needs="discriminator",
             help="generator side of the adversarial loss on the source features"),
    LossTerm("style_in", "soft_ce", 1.0, ("P_in/source", "style_soft/source"), needs="style_heads",
             help="P_in(f) vs the soft style label of the source batch"),
    LossTerm("style_out", "hard_ce", 1.0, ("P_out/source", "style/source"), needs="style_heads",
             help="P_out(g) vs the hard style label of the source batch"),
    LossTerm("consistency", "style_consistency", 0.5, ("P_in/target", "P_out/target"), needs="style_heads",
             help="P_in and P_out agree on the target batch"),
    LossTerm("entropy", "entropy_reduction", 0.5, ("P_in/target", "P_out/target"), kwargs={"margin": 1.0},
             needs="style_heads", help="entropy reduction of P_out vs P_in on the target batch"),
    # --- model-specific objectives (off unless a recipe names them) ---
    LossTerm("output_{domain}", "intrinsic_harmony", 1.0, ("output/{domain}", "real/{domain}"), RECON_MODES,
             default_on=False, help="a loss of the whole model output and the [0, 1] target "
             "(intrinsic_harmony: Guo et al.'s reflectance / illumination / IFM terms; pctnet_smoothness)"),
    # image-level GAN (mode single; DoveNet / RainNet): the discriminator reads the output image
    # (or the composited output, train.composite_output) in the model's output space and the mask
    LossTerm("image_discriminator", "dovenet_d", 1.0, ("Dimg_detached/fake", "Dimg/real"), ("single",),
             needs="discriminator", trains="discriminator", phase="discriminator", log_name="D_loss", log_prefix="D_",
             default_on=False, help="image discriminator on the detached output (fake) vs the target (real)"),
    LossTerm("gradient_penalty", "dovenet_gp", 1.0, ("D_net", "target_image", "fake_image", "mask_image"), ("single",),
             needs="discriminator", phase="discriminator", log_name="D_gp", default_on=False,
             help="WGAN-GP penalty of the image discriminator (DoveNet / RainNet gp_ratio)"),
    LossTerm("image_adversarial", "dovenet_g", 1.0, ("Dimg/fake",), ("single",), needs="discriminator",
             log_prefix="G_", default_on=False, help="generator side of the image GAN (scores of the output)"),
)


def expand_slots(domains: Sequence[str]) -> List[Tuple[str, LossTerm, Optional[str]]]:
    """``(slot, term, domain)`` for every term, per-domain terms once per domain, table order."""
    out: List[Tuple[str, LossTerm, Optional[str]]] = []
    for t in LOSS_TERMS:
        if t.per_domain:
            out += [(t.slot.format(domain=d), t, d) for d in domains]
        else:
            out.append((t.slot, t, None))
    return out


def term_of(slot: str, domains: Sequence[str]) -> Tuple[LossTerm, Optional[str]]:
    for s, t, d in expand_slots(domains):
        if s == slot:
            return t, d
    raise KeyError(f"loss.{slot}: not a loss term of the domains {list(domains)}")


def _is_active(spec: Optional[Mapping[str, Any]]) -> bool:
    return spec is not None and float(spec.get("weight", 1.0)) != 0.0


def active_slots(mode: str, domains: Sequence[str], loss: Mapping[str, Any], components: Mapping[str, bool]) -> List[str]:
    """Slots the mode trains with: used by ``mode``, not null / weight 0, their component built.

    Args:
        domains: the data domains of this run (per-domain slots of other domains are ignored).
        loss: the recipe's ``loss`` section.
        components: ``{"discriminator": built?, "style_heads": built?}``.
    """
    out = []
    for slot, t, _ in expand_slots(domains):
        if mode not in t.modes or not _is_active(loss.get(slot)):
            continue
        if t.needs is not None and not components.get(t.needs, False):
            continue
        out.append(slot)
    return out


def check_loss_components(mode: str, loss: Mapping[str, Any], components: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the key when a term needs a null component, or a configured
    component has no term training it (``components``: the recipe's component sections)."""
    for t in LOSS_TERMS:
        if mode not in t.modes or t.per_domain:
            continue
        if t.needs is not None and _is_active(loss.get(t.slot)) and components.get(t.needs) is None:
            raise ValueError(f"loss.{t.slot}: active (weight != 0) but {t.needs} is null; set loss.{t.slot}: null")
        # single mode: a configured discriminator without image-GAN terms is unused (not an error)
        if mode == "charmnet" and t.trains is not None and loss.get(t.slot) is None and components.get(t.trains) is not None:
            raise ValueError(f"loss.{t.slot}: null but a {t.trains} is configured; set {t.trains}: null")


def call_term(
    fn: torch.nn.Module, slot: str, term: LossTerm, domain: Optional[str], tensors: Mapping[str, Any]
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Evaluate one term on the step's named tensors: ``(value, extra logs)``."""
    args = []
    for name in term.inputs:
        key = name.format(domain=domain) if domain else name
        if key not in tensors:
            raise KeyError(f"loss.{slot}: the step has no tensor {key!r} (has {sorted(tensors)})")
        args.append(tensors[key])
    if hasattr(fn, "parts"):
        parts = fn.parts(*args)
        return parts["total"], {term.log_prefix + k: v for k, v in parts.items() if k != "total"}
    return fn(*args), {}
