"""CharmNet entrypoints (Cao, Cong, Niu, BMVC 2022): a backbone + the ``split`` adapter.

| name | what | params |
|---|---|---|
| ``charmnet_idih`` | CharmNet generator: iDIH-256 split at k=4, domains rendered/real | 9,257,544 |
| ``charmnet_idih_split{1..6}`` | the same split after k stages | |
| ``charmnet_idih_shared`` | one iDIH for both domains (fusion / two-stage), f/g at k=4 | 8,301,284 |

``create_model("charmnet_idih", ch=8, max_channels=64)`` is the reduced-width network of the
parity fixtures. Other backbones that implement the stage protocol get ``charmnet_<name>``
entries in their own files (``make_charmnet_entrypoints``).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch

import torch.nn as nn

from harmonykit.convert import CheckpointError, CheckpointLayout, register_layout
from harmonykit.models._builder import build_model, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import CHARMNET_DOMAINS
from harmonykit.models.idih import _IDIH, _LAYER, _OFF_ENC, _dec_off_to_unet, _enc_off_to_unet, _head_off_to_unet, _stage_shapes, _unet_to_off_enc

__all__ = [
    "charmnet_idih",
    "charmnet_idih_shared",
    "make_charmnet_entrypoints",
    "official_charmnet_to_split",
    "split_to_official_charmnet",
]

PAPER = dict(paper_ids="arXiv:2103.17104", paper_name="Deep Image Harmonization by Bridging the Reality Gap")
CHARMNET_ARGS = dict(adapter="split", split_depth=4, domains=CHARMNET_DOMAINS)


def make_charmnet_entrypoints(
    backbone_name: str,
    backbone_args: Dict[str, Any],
    tiny_args: Dict[str, Any],
    splits: range = range(0),
    cfg: Optional[PretrainedCfg] = None,
    split_depth: int = 4,
) -> Dict[str, Any]:
    """Register ``charmnet_<backbone_name>`` (split at ``split_depth``), ``..._shared`` and
    ``..._split{k}`` for ``k`` in ``splits``; returns the entrypoints by name."""
    base = dict(backbone_args, **dict(CHARMNET_ARGS, split_depth=split_depth))
    cfg = (cfg or PretrainedCfg()).replace(**PAPER, tiny_args=tiny_args)
    variants = {f"charmnet_{backbone_name}": (base, "CharmNet generator on {b}, split depth k={k}.")}
    variants[f"charmnet_{backbone_name}_shared"] = (
        dict(base, adapter="shared"),
        "One {b} shared by both domains (dataset fusion / two-stage baselines), f/g at k={k}.",
    )
    for k in splits:
        variants[f"charmnet_{backbone_name}_split{k}"] = (dict(base, split_depth=k), "CharmNet on {b} split after k={k} stages.")
    out = {}
    for name, (defaults, doc) in variants.items():
        register_pretrained_cfgs({name: cfg})

        def entry(pretrained: bool = False, _name: str = name, _defaults: Dict[str, Any] = defaults, **kwargs: Any) -> nn.Module:
            return build_model(_name, _defaults, kwargs, pretrained=pretrained)

        entry.__name__ = entry.__qualname__ = name
        entry.__doc__ = doc.format(b=backbone_name, k=defaults["split_depth"])
        out[name] = register_model(entry)
    return out


# -- official checkpoint layout (bcmi ``CharmNet/models/networks.py``) -------------------------
# ``render_enc.*``, ``real_enc.*``, ``encoder_blocks.block{4..6}.*``, ``deconv_blocks.{0..2}.*``,
# ``real_dec.*``, ``render_dec.*`` (142 entries at k=4) <-> our ``split`` names
# (``encoders.real.0.conv.weight``, ``shared_encoder.4...``, ``heads.real...``).

_CHARM_DOMAIN = {"render": CHARMNET_DOMAINS[0], "real": CHARMNET_DOMAINS[1]}


def _charmnet_split_depth(keys: Iterable[str]) -> int:
    idx = {int(m.group(1)) for k in keys if k.startswith("real_enc.") for m in [_OFF_ENC.match(k[9:])] if m}
    return max(idx) + 1 if idx else 4


def official_charmnet_to_split(sd: Mapping[str, torch.Tensor], depth: int = 7) -> Dict[str, torch.Tensor]:
    """bcmi CharmNet generator names -> our ``split`` names (domains rendered / real)."""
    k_split = _charmnet_split_depth(sd.keys())
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        new = None
        if head in ("render_enc", "real_enc"):
            u = _enc_off_to_unet(rest)
            if u:
                new = f"encoders.{_CHARM_DOMAIN[head[:-4]]}." + u[len("encoder."):]
        elif head == "encoder_blocks":
            u = _enc_off_to_unet(rest)
            if u:
                new = "shared_encoder." + u[len("encoder."):]
        elif head == "deconv_blocks":
            u = _dec_off_to_unet(k)
            if u:
                new = "shared_decoder." + u[len("decoder."):]
        elif head in ("render_dec", "real_dec"):
            dom = _CHARM_DOMAIN[head[:-4]]
            u = _dec_off_to_unet(rest, offset=depth - k_split) or _head_off_to_unet(rest)
            if u and u.startswith("decoder."):
                new = f"decoders.{dom}." + u[len("decoder."):]
            elif u:
                new = f"heads.{dom}." + u[len("head."):]
        if new is None:
            raise CheckpointError(f"unexpected key {k!r} in an official CharmNet generator state dict")
        out[new] = v
    return out


def split_to_official_charmnet(sd: Mapping[str, torch.Tensor], depth: int = 7, split_depth: int = 4) -> Dict[str, torch.Tensor]:
    """Our ``split`` names (domains rendered / real) -> bcmi CharmNet generator names."""
    inv = {v: k for k, v in _CHARM_DOMAIN.items()}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] in ("encoders", "decoders", "heads"):
            if parts[1] not in inv:
                raise CheckpointError(f"key {k!r}: the official layout only has domains 'rendered' and 'real'")
            pre = inv[parts[1]]
            if parts[0] == "encoders":
                out[f"{pre}_enc." + _unet_to_off_enc(int(parts[2]), parts[3], ".".join(parts[4:]))] = v
            elif parts[0] == "decoders":
                j = int(parts[2]) - (depth - split_depth)
                out[f"{pre}_dec.deconv_blocks.{j}.block.{_LAYER[parts[3]]}." + ".".join(parts[4:])] = v
            else:
                out[f"{pre}_dec." + ".".join(parts[2:])] = v
        elif parts[0] == "shared_encoder":
            out[f"encoder_blocks.block{parts[1]}.block.{_LAYER[parts[2]]}." + ".".join(parts[3:])] = v
        elif parts[0] == "shared_decoder":
            out[f"deconv_blocks.{parts[1]}.block.{_LAYER[parts[2]]}." + ".".join(parts[3:])] = v
        else:
            raise CheckpointError(f"unexpected key {k!r} in a harmonykit split state dict")
    return out


def infer_split_args(sd: Mapping[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """``(architecture, model_args)`` of a split (CharmNet) state dict in our names."""
    dom = sorted({k.split(".")[1] for k in sd if k.startswith("encoders.")})
    d0 = "real" if "real" in dom else dom[0]
    own = _stage_shapes(sd, rf"^encoders\.{re.escape(d0)}\.(\d+)\.conv\.weight$")
    shared = _stage_shapes(sd, r"^shared_encoder\.(\d+)\.conv\.weight$")
    enc = own + shared
    bn = [int(m.group(1)) for k in sd for m in [re.match(rf"^(?:encoders\.{re.escape(d0)}|shared_encoder)\.(\d+)\.norm\.weight$", k)] if m]
    args = dict(
        depth=len(enc), ch=enc[0], max_channels=max(enc), batchnorm_from=min(bn) if bn else len(enc),
        image_fusion=f"heads.{d0}.conv_attention.weight" in sd, split_depth=len(own),
    )
    if set(dom) != set(CHARMNET_DOMAINS):
        args["domains"] = dom
    return "charmnet_idih", args


def _official_charmnet_to_model(model: nn.Module, sd: Dict[str, torch.Tensor], domain: Optional[str]):
    if not hasattr(model, "from_single_network") or not hasattr(model, "encoders"):
        raise CheckpointError(
            "this is an official CharmNet generator checkpoint; load it into a split model such as "
            "'charmnet_idih' (the model you gave has a single network)"
        )
    return official_charmnet_to_split(sd, getattr(model, "backbone_depth", 7)), []


register_layout(
    CheckpointLayout(
        "official_charmnet",
        detect=lambda keys: any(k.startswith(("render_enc.", "real_enc.", "real_dec.", "render_dec.")) for k in keys),
        to_model=_official_charmnet_to_model,
        convert={"split": lambda sd, depth=7, **_: official_charmnet_to_split(sd, depth)},
        infer=lambda sd: infer_split_args(official_charmnet_to_split(sd, depth=7)),
        priority=20,
    )
)
register_layout(
    CheckpointLayout(
        "split",
        detect=lambda keys: any(k.startswith(("encoders.", "shared_encoder.", "shared_decoder.", "decoders.", "heads.")) for k in keys),
        convert={"official_charmnet": lambda sd, depth=7, split_depth=4, **_: split_to_official_charmnet(sd, depth, split_depth)},
        infer=infer_split_args,
        priority=5,
    )
)


_CHARMNET_IDIH = dict(_IDIH, init="normal")
_ENTRIES = make_charmnet_entrypoints("idih", _CHARMNET_IDIH, dict(ch=8, max_channels=16), splits=range(1, 7))
charmnet_idih = _ENTRIES["charmnet_idih"]
charmnet_idih_shared = _ENTRIES["charmnet_idih_shared"]
for _name, _fn in _ENTRIES.items():
    globals()[_name] = _fn
    if _name not in __all__:
        __all__.append(_name)
