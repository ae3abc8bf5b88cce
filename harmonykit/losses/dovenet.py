"""DoveNet's adversarial objective (Cong et al. CVPR 2020; official ``DoveNetModel``).

The discriminator (:class:`harmonykit.models.dovenet.DoveNetDiscriminator`) gives two scores for
an image in the official [-1, 1] space and its mask: the global one (real vs harmonized) and
the domain-verification one (foreground and background from the same domain?). The official
training (``--gan_mode wgangp``) uses

- discriminator: ``L_D = mean(relu(1 + s_fake)) + mean(relu(1 - s_real))`` for each score,
  plus ``gp_ratio *`` a WGAN-GP gradient penalty on ``(global + verification) / 2``
  (``lambda_gp = 10``, mixed real/fake interpolation);
- generator: ``L_G = lambda_a * -mean(global(fake)) + lambda_v * -mean(verification(fake))``,
  added to ``lambda_L1 = 100`` times the L1 loss (registered ``l1``) between output and target,
  both in [-1, 1].

``gan_mode="vanilla"`` (BCE with logits) and ``"lsgan"`` (MSE) follow the official ``GANLoss``.
Scores are ``(B, 1, h, w)`` maps; means run over every element.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.registry import LOSSES

__all__ = ["DoveNetDiscriminatorLoss", "DoveNetGeneratorLoss", "DoveNetGradientPenalty", "GAN_MODES"]

GAN_MODES = ("wgangp", "vanilla", "lsgan")


def _check_mode(mode: str) -> str:
    if mode not in GAN_MODES:
        raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")
    return mode


def _target_loss(score: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """Official ``GANLoss(mode)(score, real)``."""
    if mode == "wgangp":
        return -score.mean() if real else score.mean()
    target = torch.full_like(score, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(score, target)
    return F.mse_loss(score, target)


def _d_term(score: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """One discriminator term: hinge for ``wgangp`` (as the official ``backward_D``), else GANLoss."""
    if mode == "wgangp":
        return F.relu(1.0 - score).mean() if real else F.relu(1.0 + score).mean()
    return _target_loss(score, real, mode)


def _scores(s: Any):
    """(global, verification) from a ``DoveNetScores`` or a 2-tuple."""
    if hasattr(s, "global_score"):
        return s.global_score, s.verification_score
    g, v = s
    return g, v


@LOSSES.register("dovenet_d")
class DoveNetDiscriminatorLoss(nn.Module):
    """DoveNet discriminator loss.

    ``forward(scores_fake, scores_real, gradient_penalty=None)`` -> scalar; the scores are
    :class:`~harmonykit.models.dovenet.DoveNetScores` (or ``(global, verification)`` tuples) of
    the harmonized (detached) and the real image. :meth:`parts` returns the official terms:
    ``global_fake``, ``verification_fake``, ``global_real``, ``verification_real``, ``fake``
    (official ``loss_D_fake``), ``real`` (``loss_D_real``), ``global`` (``loss_D_global``),
    ``verification`` (``loss_D_local``), ``gp`` and ``total``.

    Args:
        gan_mode: ``"wgangp"`` (official train script: hinge terms), ``"vanilla"`` or ``"lsgan"``.
        gp_weight: official ``gp_ratio`` (1.0), the weight of ``gradient_penalty``.
    """

    def __init__(self, gan_mode: str = "wgangp", gp_weight: float = 1.0) -> None:
        super().__init__()
        self.gan_mode, self.gp_weight = _check_mode(gan_mode), float(gp_weight)

    def parts(
        self, scores_fake: Any, scores_real: Any, gradient_penalty: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        gf, vf = _scores(scores_fake)
        gr, vr = _scores(scores_real)
        m = self.gan_mode
        p = {
            "global_fake": _d_term(gf, False, m),
            "verification_fake": _d_term(vf, False, m),
            "global_real": _d_term(gr, True, m),
            "verification_real": _d_term(vr, True, m),
        }
        p["fake"] = p["global_fake"] + p["verification_fake"]
        p["real"] = p["global_real"] + p["verification_real"]
        p["global"] = p["global_fake"] + p["global_real"]
        p["verification"] = p["verification_fake"] + p["verification_real"]
        gp = gradient_penalty if gradient_penalty is not None else torch.zeros((), device=gf.device, dtype=gf.dtype)
        p["gp"] = gp
        p["total"] = p["fake"] + p["real"] + self.gp_weight * gp
        return p

    def forward(self, scores_fake: Any, scores_real: Any, gradient_penalty: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.parts(scores_fake, scores_real, gradient_penalty)["total"]

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}, gp_weight={self.gp_weight:g}"


@LOSSES.register("dovenet_g")
class DoveNetGeneratorLoss(nn.Module):
    """DoveNet generator adversarial loss ``lambda_a * L(global) + lambda_v * L(verification)``
    on the scores of the harmonized image (official ``loss_G_GAN``; ``-mean`` each for
    ``wgangp``). :meth:`parts` returns ``global``, ``verification`` and ``total``.

    Args:
        gan_mode: ``"wgangp"``, ``"vanilla"`` or ``"lsgan"``.
        lambda_a: weight of the global adversarial term (official 1.0).
        lambda_v: weight of the verification term (official 1.0).
    """

    def __init__(self, gan_mode: str = "wgangp", lambda_a: float = 1.0, lambda_v: float = 1.0) -> None:
        super().__init__()
        self.gan_mode = _check_mode(gan_mode)
        self.lambda_a, self.lambda_v = float(lambda_a), float(lambda_v)

    def parts(self, scores_fake: Any) -> Dict[str, torch.Tensor]:
        g, v = _scores(scores_fake)
        lg, lv = _target_loss(g, True, self.gan_mode), _target_loss(v, True, self.gan_mode)
        return {"global": lg, "verification": lv, "total": self.lambda_a * lg + self.lambda_v * lv}

    def forward(self, scores_fake: Any) -> torch.Tensor:
        return self.parts(scores_fake)["total"]

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}, lambda_a={self.lambda_a:g}, lambda_v={self.lambda_v:g}"


@LOSSES.register("dovenet_gp")
class DoveNetGradientPenalty(nn.Module):
    """WGAN-GP penalty of the official ``cal_gradient_penalty``:
    ``lambda_gp * mean_b((||grad_x D(x)_b + 1e-16||_2 - constant)^2)`` at
    ``x = alpha * real + (1 - alpha) * fake`` (``alpha ~ U(0, 1)`` per sample, ``kind="mixed"``),
    where ``D(x)`` is ``discriminator.penalty_score(x, mask)`` (``(global + verification) / 2``).

    ``forward(discriminator, real, fake, mask, alpha=None)``: images ``(B, 3, H, W)`` in [-1, 1]
    (detached here), ``alpha (B, 1)`` drawn with ``torch.rand`` when not given (the official
    draw). Keeps the graph (``create_graph=True``) so the penalty trains the discriminator.

    Args:
        lambda_gp: 10.0 (official). constant: 1.0. kind: ``"mixed"``, ``"real"`` or ``"fake"``.
    """

    def __init__(self, lambda_gp: float = 10.0, constant: float = 1.0, kind: str = "mixed") -> None:
        super().__init__()
        if kind not in ("mixed", "real", "fake"):
            raise ValueError(f"kind must be 'mixed', 'real' or 'fake', got {kind!r}")
        self.lambda_gp, self.constant, self.kind = float(lambda_gp), float(constant), kind

    def forward(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        mask: torch.Tensor,
        alpha: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        real, fake = real.detach(), fake.detach()
        if self.lambda_gp <= 0:
            return torch.zeros((), device=real.device, dtype=real.dtype)
        if self.kind == "real":
            x = real
        elif self.kind == "fake":
            x = fake
        else:
            if alpha is None:
                alpha = torch.rand(real.shape[0], 1, device=real.device)
            a = alpha.to(real.dtype).reshape(real.shape[0], 1, 1, 1)
            x = a * real + (1 - a) * fake
        x = x.clone().requires_grad_(True)
        score_fn = getattr(discriminator, "penalty_score", discriminator)
        score = score_fn(x, mask)
        (grad,) = torch.autograd.grad(score, x, grad_outputs=torch.ones_like(score), create_graph=True, retain_graph=True)
        grad = grad.reshape(real.shape[0], -1)
        return ((grad + 1e-16).norm(2, dim=1) - self.constant).pow(2).mean() * self.lambda_gp

    def extra_repr(self) -> str:
        return f"lambda_gp={self.lambda_gp:g}, constant={self.constant:g}, kind={self.kind!r}"
