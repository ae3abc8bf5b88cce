"""Domain adapters: turn one backbone into a harmonizer for several named domains.

- ``split`` (CharmNet, paper §4.1): each domain gets its own copy of the first ``k`` encoder
  stages and of the last ``k`` decoder stages plus the output head; the middle is shared.
- ``shared``: one network for every domain (dataset fusion, two-stage training); it still
  reports ``f``/``g`` at ``split_depth`` so style heads can be attached.

Both only use the backbone's stage protocol (:class:`harmonykit.models.base.StageBackbone`:
``encoder``, ``decoder``, ``head``, ``feature_info``, ``stage_config``, ``run_stages``), never
its internals, so they work on every backbone that implements it.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from harmonykit.models.base import CHARMNET_DOMAINS, Harmonizer, StageBackbone
from harmonykit.models.layers import init_weights
from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.registry import ADAPTERS

__all__ = ["DomainSplitNet", "SharedDomainNet", "DEFAULT_DOMAINS"]

DEFAULT_DOMAINS: Tuple[str, ...] = CHARMNET_DOMAINS


class _DomainNetBase(Harmonizer):
    """Common API of adapted networks: the backbone's wiring, applied to per-domain stages."""

    backbone_depth: int
    split_depth: int
    feature_channels: int

    def _init_common(
        self, backbone: StageBackbone, split_depth: int, domains: Sequence[str], default_domain: Optional[str]
    ) -> None:
        """Domains, default domain, split point and the backbone's wiring."""
        if not isinstance(backbone, StageBackbone):
            raise TypeError(
                f"{type(self).__name__} needs a backbone implementing the stage protocol "
                f"(harmonykit.models.base.StageBackbone), got {type(backbone).__name__}"
            )
        if len(backbone.encoder) != len(backbone.decoder):
            raise ValueError(f"{type(backbone).__name__}: the stage protocol needs as many decoder as encoder stages")
        self.set_domains(domains, default_domain)
        self.backbone_depth, self.split_depth = len(backbone.encoder), split_depth
        self.feature_channels = backbone.split_channels(split_depth)  # validates 1 <= k < depth
        self.feature_reduction = backbone.split_reduction(split_depth)
        self.feature_info = list(backbone.feature_info)
        self.size_divisor, self.min_size = backbone.size_divisor, backbone.min_size
        self.native_resolution = getattr(backbone, "native_resolution", False)
        self._backbone_cls = type(backbone)
        self._stage_config = backbone.stage_config()
        self.init_scheme = getattr(backbone, "init_scheme", "torch")

    def check_input_size(self, height: int, width: int) -> None:
        self._backbone_cls.check_input_size(self, height, width)  # the backbone's rule and message

    @property
    def depth(self) -> int:
        return self.backbone_depth

    @property
    def skip_sources(self):
        return self._stage_config.get("skip_sources")

    def stages(self, domain: str) -> Tuple[List[nn.Module], List[nn.Module], nn.Module]:
        raise NotImplementedError

    def forward_stages(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None):
        enc, dec, head = self.stages(self.resolve_domain(domain))
        return self._backbone_cls.run_stages(self._stage_config, enc, dec, head, composite, mask, self.split_depth)

    def forward_normalized(self, image: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None):
        """Official-space forward of the iDIH family -> (output, attention, f, g), normalised
        (other backbones: :meth:`forward_stages`)."""
        from harmonykit.models.idih import UNetBackbone, unet_forward

        if not issubclass(self._backbone_cls, UNetBackbone):
            raise NotImplementedError(f"forward_normalized is the iDIH family's; use forward_stages for {self._backbone_cls.__name__}")
        enc, dec, head = self.stages(self.resolve_domain(domain))
        return unet_forward(enc, dec, self.skip_sources, head, image, mask, self.split_depth)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        """composite ``(B, 3, H, W)`` in [0, 1], mask ``(B, 1, H, W)``; ``domain`` picks the
        branch (default: ``default_domain``, the real one for inference)."""
        domain = self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        return self.forward_stages(composite, mask, domain).to_output()


@ADAPTERS.register("split")
class DomainSplitNet(_DomainNetBase):
    """CharmNet's generator: domain-specific first/last ``split_depth`` stages, shared middle.

    Parameters are named by absolute stage index: ``encoders.<domain>.<i>`` (i < k),
    ``shared_encoder.<i>`` (k <= i < depth), ``shared_decoder.<j>`` (j < depth - k),
    ``decoders.<domain>.<j>`` and ``heads.<domain>``.
    """

    def __init__(
        self,
        backbone: StageBackbone,
        split_depth: int = 4,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        default_domain: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._init_common(backbone, split_depth, domains, default_domain)
        depth = self.backbone_depth
        k, n_shared_dec = split_depth, depth - split_depth
        init = self.init_scheme
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for idx, d in enumerate(self.domains):
            enc = nn.ModuleDict({str(i): copy.deepcopy(backbone.encoder[i]) for i in range(k)})
            dec = nn.ModuleDict({str(j): copy.deepcopy(backbone.decoder[j]) for j in range(n_shared_dec, depth)})
            head = copy.deepcopy(backbone.head)
            if idx > 0:  # every branch gets its own random init, as the official code does
                for m in (enc, dec, head):
                    init_weights(m, init)
            self.encoders[d], self.decoders[d], self.heads[d] = enc, dec, head
        self.shared_encoder = nn.ModuleDict({str(i): backbone.encoder[i] for i in range(k, depth)})
        self.shared_decoder = nn.ModuleDict({str(j): backbone.decoder[j] for j in range(n_shared_dec)})

    def stages(self, domain: str):
        enc = [self.encoders[domain][str(i)] for i in range(self.split_depth)]
        enc += [self.shared_encoder[str(i)] for i in range(self.split_depth, self.backbone_depth)]
        n_shared = self.backbone_depth - self.split_depth
        dec = [self.shared_decoder[str(j)] for j in range(n_shared)]
        dec += [self.decoders[domain][str(j)] for j in range(n_shared, self.backbone_depth)]
        return enc, dec, self.heads[domain]

    def branch_key(self, domain: str, unet_key: str) -> str:
        """Map a single-network parameter name (``encoder.3.conv.weight``) to this model's name
        for ``domain`` (``encoders.real.3.conv.weight`` or ``shared_encoder.4...``)."""
        part, _, rest = unet_key.partition(".")
        if part == "head":
            return f"heads.{domain}.{rest}"
        idx, _, tail = rest.partition(".")
        if part not in ("encoder", "decoder") or not idx.isdigit():
            raise KeyError(f"not a stage-backbone parameter name: {unet_key!r}")
        i = int(idx)
        if part == "encoder":
            return f"encoders.{domain}.{i}.{tail}" if i < self.split_depth else f"shared_encoder.{i}.{tail}"
        n_shared = self.backbone_depth - self.split_depth
        return f"shared_decoder.{i}.{tail}" if i < n_shared else f"decoders.{domain}.{i}.{tail}"

    def from_single_network(self, sd: Dict[str, torch.Tensor], domain: Optional[str] = None):
        """Rename a single backbone's state dict to fill ``domain``'s branch (default: the
        default domain) and the shared stages. Returns (renamed dict, the other domains' keys,
        which may stay missing)."""
        dom = self.resolve_domain(domain)
        renamed = {self.branch_key(dom, k): v for k, v in sd.items()}
        others = [
            k for k in self.state_dict()
            if k not in renamed and any(k.startswith(f"{p}.{d}.") for p in ("encoders", "decoders", "heads") for d in self.domains if d != dom)
        ]
        return renamed, others


@ADAPTERS.register("shared")
class SharedDomainNet(_DomainNetBase):
    """One network for every domain (dataset fusion / two-stage baselines).

    Parameter names are the backbone's own (``encoder.<i>``, ``decoder.<j>``, ``head``), so an
    iDIH checkpoint loads directly. ``f``/``g`` are reported at ``split_depth``.
    """

    def __init__(
        self,
        backbone: StageBackbone,
        split_depth: int = 4,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        default_domain: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._init_common(backbone, split_depth, domains, default_domain)
        self.encoder, self.decoder, self.head = backbone.encoder, backbone.decoder, backbone.head

    def stages(self, domain: str):
        return list(self.encoder), list(self.decoder), self.head

    def branch_key(self, domain: str, unet_key: str) -> str:
        return unet_key

    def from_single_network(self, sd: Dict[str, torch.Tensor], domain: Optional[str] = None):
        self.resolve_domain(domain)
        return sd, []
