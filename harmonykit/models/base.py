"""The one forward contract every registered model keeps, and the backbone stage protocol.

- :class:`Harmonizer`: ``model(composite, mask, domain=None) -> HarmonizationOutput``; every
  model has ``.domains`` (a tuple of names) and ``.default_domain``. A single-domain model has
  one domain (``("real",)``) and accepts ``domain=None`` or its own name. The domain is
  resolved in one place: :meth:`Harmonizer.resolve_domain`. Inputs are validated in one place:
  :func:`check_inputs`.
- :class:`StageBackbone`: a network given as ordered encoder stages, decoder stages, skip
  wiring and an output head, with the channels / stride of every encoder feature
  (``feature_info``, as timm's). The domain adapters (``split``, ``shared``) use this protocol
  and nothing else, so CharmNet's bridging works on any backbone that implements it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from harmonykit.models.outputs import HarmonizationOutput

__all__ = [
    "Harmonizer",
    "StageBackbone",
    "StageOutput",
    "FeatureInfo",
    "check_inputs",
    "check_domains",
    "DEFAULT_DOMAIN",
    "CHARMNET_DOMAINS",
]

DEFAULT_DOMAIN = "real"
"""The domain a single-domain model serves, and the one inference picks when it exists."""

CHARMNET_DOMAINS: Tuple[str, str] = ("rendered", "real")
"""The two domains of the paper (RdHarmony renders, iHarmony4 photos)."""


def check_domains(domains: Sequence[str]) -> Tuple[str, ...]:
    """Validate domain names: distinct, non-empty strings without '.'; returns a tuple."""
    if isinstance(domains, str):
        domains = (domains,)
    domains = tuple(domains)
    if not domains or len(set(domains)) != len(domains) or not all(isinstance(d, str) and d for d in domains):
        raise ValueError(f"domains must be distinct non-empty names, got {domains!r}")
    for d in domains:
        if "." in d:
            raise ValueError(f"domain name {d!r} may not contain '.'")
    return domains


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_inputs(composite: torch.Tensor, mask: torch.Tensor, min_size: int = 1, check_range: bool = True) -> None:
    """Validate a forward's inputs: composite ``(B, 3, H, W)`` float in [0, 1], mask
    ``(B, 1, H, W)`` float in [0, 1] with the same batch and size, H and W >= ``min_size``.

    Integer tensors and floats on the 0..255 scale are refused with a message saying what is
    expected (they would otherwise give NaN or clipped colours silently).
    """
    for name, t, ch in (("composite", composite, 3), ("mask", mask, 1)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != ch:
            raise ValueError(f"{name} must be a (B, {ch}, H, W) tensor, got {_shape(t)}")
        if not t.is_floating_point():
            raise TypeError(
                f"{name} has dtype {t.dtype}; expected a floating-point tensor in [0, 1] "
                f"(divide uint8 images by 255: x.float() / 255)"
            )
    if mask.shape[0] != composite.shape[0] or mask.shape[-2:] != composite.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match composite {tuple(composite.shape)} in batch or size")
    h, w = composite.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f"input {h}x{w} is smaller than the minimum {min_size}x{min_size} this model accepts")
    if check_range and not torch.jit.is_tracing() and not _is_compiling() and composite.numel():
        with torch.no_grad():
            hi = float(torch.maximum(composite.detach().amax(), mask.detach().amax()))
            lo = float(torch.minimum(composite.detach().amin(), mask.detach().amin()))
        if hi > 1.5 or lo < -0.5:
            raise ValueError(
                f"inputs must be in [0, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                f"(0..255 images: divide by 255; masks: foreground = 1)"
            )


def _is_compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover - old torch
        return False


class Harmonizer(nn.Module):
    """Base class of every registered model.

    Subclasses implement :meth:`forward` as ``(composite, mask, domain=None)`` and call
    :meth:`resolve_domain` once. Class attributes give the defaults of a single-domain model.

    Attributes:
        domains: the domain names this model has a branch for.
        default_domain: the branch used when ``domain=None`` (inference).
        size_divisor: H and W must be multiples of it (1: any size).
        min_size: smallest H and W accepted.
        architecture, model_args, pretrained_cfg: set by the factory.
    """

    domains: Tuple[str, ...] = (DEFAULT_DOMAIN,)
    default_domain: str = DEFAULT_DOMAIN
    size_divisor: int = 1
    min_size: int = 1
    native_resolution: bool = False  # True: takes whole full-resolution images (harmonize policy "native")
    output_mean: Optional[Tuple[float, ...]] = None  # None: pretrained_cfg["mean"] (see normalize_target)
    output_std: Optional[Tuple[float, ...]] = None

    def resolve_domain(self, domain: Optional[str]) -> str:
        """The branch to run: ``default_domain`` for ``None``; an unknown name raises."""
        if domain is None:
            return self.default_domain
        if domain not in self.domains:
            raise ValueError(f"unknown domain {domain!r}; this model has domains {list(self.domains)}")
        return domain

    def set_domains(self, domains: Sequence[str], default_domain: Optional[str] = None) -> None:
        """Set ``domains`` and ``default_domain`` (``"real"`` when present, else the first)."""
        self.domains = check_domains(domains)
        default = default_domain or (DEFAULT_DOMAIN if DEFAULT_DOMAIN in self.domains else self.domains[0])
        if default not in self.domains:
            raise ValueError(f"default_domain {default!r} is not one of {list(self.domains)}")
        self.default_domain = default

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` naming the valid sizes when ``height x width`` cannot be run."""
        div, low = self.size_divisor, self.min_size
        if height % div or width % div or height < low or width < low:
            def up(v: int) -> int:
                return max(low, -(-v // div) * div)

            raise ValueError(
                f"input size {height}x{width} (HxW) does not fit {type(self).__name__}: height and width must "
                f"be multiples of {div} and at least {low}; the nearest larger valid size is "
                f"{up(height)}x{up(width)}. Resize or pad first, or use harmonykit.harmonize(), which handles any size."
            )

    def check_inputs(self, composite: torch.Tensor, mask: torch.Tensor) -> None:
        """Shapes, dtype, value range and size of a forward's inputs."""
        # the range check reads values back (a device sync): skipped in CUDA training steps
        check_inputs(composite, mask, min_size=1, check_range=not (self.training and composite.is_cuda))
        self.check_input_size(*composite.shape[-2:])

    def normalize_target(self, image: torch.Tensor) -> torch.Tensor:
        """Map a ``(B, 3, H, W)`` image in [0, 1] to the space of ``.image_normalized`` (the
        official network's output space, where its losses compare), ``(x - mean) / std`` with
        the class's ``output_mean`` / ``output_std`` or else the ``mean`` / ``std`` of
        ``pretrained_cfg``: ImageNet for the iDIH family, 0.5 / 0.5 for the pix2pix family
        ([-1, 1]), 0 / 1 for networks that output [0, 1]."""
        cfg = getattr(self, "pretrained_cfg", None) or {}
        m = self.output_mean if self.output_mean is not None else cfg.get("mean", (0.0, 0.0, 0.0))
        sd = self.output_std if self.output_std is not None else cfg.get("std", (1.0, 1.0, 1.0))
        mean = torch.as_tensor(m, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(sd, dtype=image.dtype, device=image.device)
        return (image - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        raise NotImplementedError


@dataclass
class FeatureInfo:
    """Channels and stride of one encoder stage's output (timm's ``feature_info`` entry)."""

    num_chs: int
    reduction: int
    module: str


@dataclass
class StageOutput:
    """What :meth:`StageBackbone.run_stages` returns.

    ``image_normalized`` is the network output in the space the official code outputs (what
    the losses use); ``image`` the same on the [0, 1] scale. ``features_in`` is the output of
    encoder stage ``k-1`` and ``features_out`` the output of the last shared decoder stage
    (decoder index ``len(decoder) - k - 1``, after its skip merge) when ``split_depth=k``.
    """

    image: torch.Tensor
    image_normalized: torch.Tensor
    attention: Optional[torch.Tensor] = None
    features_in: Optional[torch.Tensor] = None
    features_out: Optional[torch.Tensor] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)

    def to_output(self) -> HarmonizationOutput:
        return HarmonizationOutput(
            image=self.image,
            image_normalized=self.image_normalized,
            attention=self.attention,
            features_in=self.features_in,
            features_out=self.features_out,
            extras=dict(self.extras),
        )


class StageBackbone(Harmonizer):
    """A harmonizer given as stages, so a domain adapter can split it at any depth.

    A subclass provides:

    - ``encoder``: ``nn.ModuleList`` of encoder stages (input side first);
    - ``decoder``: ``nn.ModuleList`` of decoder stages (bottleneck side first), the same count;
    - ``head``: the output head (a module; may hold no parameters);
    - ``feature_info``: one :class:`FeatureInfo` per encoder stage;
    - :meth:`stage_config`: the plain values (no tensors) that the wiring needs;
    - :meth:`run_stages` (a ``classmethod``): runs *given* stage lists with that config. It
      reads no parameter of ``self``, so an adapter that owns per-domain copies of some stages
      runs exactly the backbone's computation on them.

    The split adapter gives each domain its own ``encoder[:k]``, ``decoder[-k:]`` and
    ``head``; the middle is shared.
    """

    encoder: nn.ModuleList
    decoder: nn.ModuleList
    head: nn.Module
    feature_info: List[FeatureInfo]

    @property
    def depth(self) -> int:
        return len(self.encoder)

    def split_channels(self, split_depth: int) -> int:
        """Channels of ``f`` (encoder stage ``k-1``) when split after ``split_depth`` stages."""
        if not 1 <= split_depth <= self.depth - 1:
            raise ValueError(f"split_depth must be in 1..{self.depth - 1} for depth {self.depth}, got {split_depth}")
        return self.feature_info[split_depth - 1].num_chs

    def split_reduction(self, split_depth: int) -> int:
        """Stride of ``f`` relative to the input when split after ``split_depth`` stages."""
        self.split_channels(split_depth)
        return self.feature_info[split_depth - 1].reduction

    def stage_config(self) -> Dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def run_stages(
        cls,
        config: Dict[str, Any],
        encoder: Sequence[nn.Module],
        decoder: Sequence[nn.Module],
        head: nn.Module,
        composite: torch.Tensor,
        mask: torch.Tensor,
        split_depth: Optional[int] = None,
    ) -> StageOutput:
        """Run the network on ``composite (B, 3, H, W) in [0, 1]`` and ``mask (B, 1, H, W)``."""
        raise NotImplementedError

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        out = self.run_stages(self.stage_config(), self.encoder, self.decoder, self.head, composite, mask)
        return out.to_output()
