"""Style-classifier losses (paper eq. 3-5; reference §2.3).

Every loss takes LOGITS ``(B, K)`` from the style heads and applies ``log_softmax`` itself.
Like the official code, the real-domain losses are computed on batch means: the consistency
loss is the batch mean of ``-sum_k P_in_k log P_out_k`` (gradients through both heads), the
entropy-reduction hinge is applied to the batch-mean entropies.
"""
from __future__ import annotations

import logging
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.registry import LOSSES

__all__ = ["SoftCrossEntropy", "HardCrossEntropy", "StyleConsistency", "EntropyReduction", "mean_entropy"]

_logger = logging.getLogger(__name__)


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean entropy ``mean_b(-sum_k p log p)`` of ``softmax(logits)``; in [0, ln K]."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


@LOSSES.register("soft_ce")
class SoftCrossEntropy(nn.Module):
    """``mean_b(-sum_k q_k log softmax(logits)_k)`` against a soft label ``q`` ``(B, K)`` (rows sum to 1).

    The computation follows the label's dtype (the official loader yields float64 labels).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != logits.shape:
            raise ValueError(f"soft_ce: target shape {tuple(target.shape)} != logits shape {tuple(logits.shape)}")
        logp = F.log_softmax(logits, dim=1)
        return -(target * logp).sum(dim=1).mean()


@LOSSES.register("hard_ce")
class HardCrossEntropy(nn.Module):
    """Cross-entropy against integer labels ``(B,)`` in ``0..K-1`` (batch mean)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(logits, dim=1), target.long())


@LOSSES.register("style_consistency")
class StyleConsistency(nn.Module):
    """Weighted classification loss (eq. 4): ``mean_b(-sum_k P_in_k log P_out_k)``."""

    def forward(self, logits_in: torch.Tensor, logits_out: torch.Tensor) -> torch.Tensor:
        p_in = F.softmax(logits_in, dim=1)
        return -(p_in * F.log_softmax(logits_out, dim=1)).sum(dim=1).mean()


@LOSSES.register("entropy_reduction")
class EntropyReduction(nn.Module):
    """Entropy reduction (eq. 5): ``max(0, m - Ent(P_in) + Ent(P_out))`` on batch-mean entropies.

    Args:
        margin: the margin ``m`` (1.0 in the official code).
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def parts(self, logits_in: torch.Tensor, logits_out: torch.Tensor) -> Dict[str, torch.Tensor]:
        ent_in = mean_entropy(logits_in)
        ent_out = mean_entropy(logits_out)
        loss = F.relu(self.margin - ent_in + ent_out)
        return {"entropy_in": ent_in, "entropy_out": ent_out, "total": loss}

    def forward(self, logits_in: torch.Tensor, logits_out: torch.Tensor) -> torch.Tensor:
        return self.parts(logits_in, logits_out)["total"]

    def extra_repr(self) -> str:
        return f"margin={self.margin:g}"
