"""Domain-adversarial hinge losses (paper eq. 1; reference §2.2).

The discriminator reads the domain-encoder features ``f``; rendered features are the "fake"
side and real features the "real" side. Only rendered features get the generator's
adversarial push. Score maps are ``(B, 1, h, w)``; means run over the batch and every position.
"""
from __future__ import annotations

import logging
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.registry import LOSSES

__all__ = ["HingeDiscriminatorLoss", "HingeGeneratorLoss"]

_logger = logging.getLogger(__name__)


@LOSSES.register("hinge_d")
class HingeDiscriminatorLoss(nn.Module):
    """``L_D = mean(relu(1 + D(f_rd))) + mean(relu(1 - D(f_rl)))``.

    ``forward(score_rendered, score_real)`` returns the total; :meth:`parts` also returns the two
    halves (``rendered``, ``real``).
    """

    def parts(self, score_rendered: torch.Tensor, score_real: torch.Tensor) -> Dict[str, torch.Tensor]:
        rd = F.relu(1.0 + score_rendered).mean()
        rl = F.relu(1.0 - score_real).mean()
        return {"rendered": rd, "real": rl, "total": rd + rl}

    def forward(self, score_rendered: torch.Tensor, score_real: torch.Tensor) -> torch.Tensor:
        return self.parts(score_rendered, score_real)["total"]


@LOSSES.register("hinge_g")
class HingeGeneratorLoss(nn.Module):
    """Generator side: ``L_adv = -mean(D(f_rd))`` (pushes rendered features toward "real")."""

    def forward(self, score_rendered: torch.Tensor) -> torch.Tensor:
        return -score_rendered.mean()
