"""State-dict layouts: the official Samsung iDIH and bcmi CharmNet files, and ours.

Layouts (detected from the key names):

- ``"official_idih"``: ``encoder.block0.block.0.weight``,
  ``encoder.blocks_connected.block2.block.1.running_mean``, ``decoder.deconv_blocks.3.block.0.bias``,
  ``decoder.conv_attention.weight``, ``decoder.to_rgb.weight`` (92 entries for iDIH-256).
- ``"official_charmnet"``: ``render_enc.*``, ``real_enc.*``, ``encoder_blocks.block{4..6}.*``,
  ``deconv_blocks.{0..2}.*``, ``real_dec.*``, ``render_dec.*`` (142 entries at k=4).
- ``"unet"``: our single-network names (``encoder.3.conv.weight``, ``decoder.0.norm.weight``,
  ``head.to_rgb.bias``), used by ``idih256`` and the ``shared`` adapter.
- ``"split"``: our multi-domain names (``encoders.real.0.conv.weight``, ``shared_encoder.4...``).

Files are read with safetensors, or with ``torch.load(weights_only=True)``: nothing is ever
unpickled as code. Loading is strict: a mismatch lists the missing and unexpected keys.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = [
    "CheckpointError",
    "read_state_dict",
    "detect_layout",
    "convert_state_dict",
    "load_weights",
    "load_checkpoint",
    "official_idih_to_unet",
    "unet_to_official_idih",
    "infer_model_args",
    "clean_state_dict",
]

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]

_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "netG", "generator")
_STRIP_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def read_state_dict(path: PathLike) -> StateDict:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Unwraps ``{"state_dict"|"model"|...: {...}}`` containers and strips ``module.`` /
    ``_orig_mod.`` prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{path}: refusing to load: the file contains pickled objects other than tensors "
                f"and plain containers, which could run code. harmonykit only loads weights_only "
                f"checkpoints. If you trust the file, re-save its state_dict with torch.save(sd) or "
                f"convert it to safetensors. ({str(e).splitlines()[0]})"
            ) from e
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    return clean_state_dict(obj, source=str(path))


def clean_state_dict(obj: Any, source: str = "state dict") -> StateDict:
    """Unwrap containers and strip DDP / torch.compile prefixes."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_tensor_mapping(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_tensor_mapping(obj):
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    out: StateDict = {}
    for k, v in obj.items():
        for p in _STRIP_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _is_tensor_mapping(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


# --------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------
def detect_layout(keys: Iterable[str]) -> str:
    """Name the layout of a key set (see the module docstring); ``"unknown"`` otherwise."""
    keys = list(keys)
    if any(k.startswith(("render_enc.", "real_enc.", "real_dec.", "render_dec.")) for k in keys):
        return "official_charmnet"
    if any(k.startswith(("encoder.block0.", "encoder.blocks_connected.", "decoder.deconv_blocks.")) for k in keys):
        return "official_idih"
    if any(k.startswith(("encoders.", "shared_encoder.", "shared_decoder.", "decoders.", "heads.")) for k in keys):
        return "split"
    if any(re.match(r"(encoder|decoder)\.\d+\.", k) for k in keys):
        return "unet"
    return "unknown"


_OFF_ENC = re.compile(r"^(?:blocks_connected\.)?block(\d+)\.block\.([01])\.(.+)$")
_OFF_DEC = re.compile(r"^deconv_blocks\.(\d+)\.block\.([01])\.(.+)$")
_OURS = re.compile(r"^(encoder|decoder)\.(\d+)\.(conv|norm)\.(.+)$")
_LAYER = {"0": "conv", "1": "norm", "conv": "0", "norm": "1"}


def _enc_off_to_unet(rest: str) -> Optional[str]:
    m = _OFF_ENC.match(rest)
    return f"encoder.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}" if m else None


def _dec_off_to_unet(rest: str, offset: int = 0) -> Optional[str]:
    m = _OFF_DEC.match(rest)
    return f"decoder.{int(m.group(1)) + offset}.{_LAYER[m.group(2)]}.{m.group(3)}" if m else None


def _head_off_to_unet(rest: str) -> Optional[str]:
    for name in ("conv_attention.", "to_rgb."):
        if rest.startswith(name):
            return "head." + rest
    return None


def official_idih_to_unet(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Samsung iDIH names -> our single-UNet names (values untouched)."""
    out: StateDict = {}
    for k, v in sd.items():
        new = None
        if k.startswith("encoder."):
            new = _enc_off_to_unet(k[len("encoder."):])
        elif k.startswith("decoder."):
            rest = k[len("decoder."):]
            new = _dec_off_to_unet(rest) or _head_off_to_unet(rest)
        if new is None:
            raise CheckpointError(f"unexpected key {k!r} in an official iDIH state dict")
        out[new] = v
    return out


def _unet_to_off_enc(i: int, layer: str, tail: str) -> str:
    blk = f"block{i}" if i < 2 else f"blocks_connected.block{i}"
    return f"{blk}.block.{_LAYER[layer]}.{tail}"


def unet_to_official_idih(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Our single-UNet names -> Samsung iDIH names."""
    out: StateDict = {}
    for k, v in sd.items():
        m = _OURS.match(k)
        if m:
            part, i, layer, tail = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            if part == "encoder":
                out["encoder." + _unet_to_off_enc(i, layer, tail)] = v
            else:
                out[f"decoder.deconv_blocks.{i}.block.{_LAYER[layer]}.{tail}"] = v
        elif k.startswith("head."):
            out["decoder." + k[len("head."):]] = v
        else:
            raise CheckpointError(f"unexpected key {k!r} in a harmonykit UNet state dict")
    return out


_CHARM_DOMAIN = {"render": "rendered", "real": "real"}


def _charmnet_split_depth(keys: Iterable[str]) -> int:
    idx = {int(m.group(1)) for k in keys if k.startswith("real_enc.") for m in [_OFF_ENC.match(k[9:])] if m}
    return max(idx) + 1 if idx else 4


def official_charmnet_to_split(sd: Mapping[str, torch.Tensor], depth: int = 7) -> StateDict:
    """bcmi CharmNet generator names -> our ``split`` names (domains rendered / real)."""
    k_split = _charmnet_split_depth(sd.keys())
    out: StateDict = {}
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


def split_to_official_charmnet(sd: Mapping[str, torch.Tensor], depth: int = 7, split_depth: int = 4) -> StateDict:
    """Our ``split`` names (domains rendered / real) -> bcmi CharmNet generator names."""
    inv = {v: k for k, v in _CHARM_DOMAIN.items()}
    out: StateDict = {}
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


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], src: str, dst: str, depth: int = 7, split_depth: int = 4
) -> StateDict:
    """Rename keys between layouts: ``official_idih`` <-> ``unet``, ``official_charmnet`` <->
    ``split`` (use ``src="auto"`` to detect the source layout)."""
    if src == "auto":
        src = detect_layout(sd.keys())
    pairs = {
        ("official_idih", "unet"): lambda: official_idih_to_unet(sd),
        ("unet", "official_idih"): lambda: unet_to_official_idih(sd),
        ("official_charmnet", "split"): lambda: official_charmnet_to_split(sd, depth),
        ("split", "official_charmnet"): lambda: split_to_official_charmnet(sd, depth, split_depth),
    }
    if src == dst:
        return dict(sd)
    if (src, dst) not in pairs:
        raise ValueError(f"cannot convert a {src!r} state dict to {dst!r}; supported: {sorted(pairs)}")
    return pairs[(src, dst)]()


# --------------------------------------------------------------------------------------
# loading into a model
# --------------------------------------------------------------------------------------
def _to_model_layout(model: nn.Module, sd: Mapping[str, torch.Tensor], domain: Optional[str]) -> Tuple[StateDict, List[str]]:
    """Rename ``sd`` to ``model``'s names. Returns (renamed dict, model keys allowed to stay
    missing: the other domains' branches when a single UNet initialises one branch)."""
    # model-zoo hook: a model (or an adapter's backbone class) converts its own official layout
    filt = getattr(model, "checkpoint_filter_fn", None) or getattr(getattr(model, "_backbone_cls", None), "checkpoint_filter_fn", None)
    sd = filt(sd) if filt is not None else sd
    layout = detect_layout(sd.keys())
    model_keys = list(model.state_dict().keys())
    model_layout = detect_layout(model_keys)
    if layout == "official_idih":
        sd, layout = official_idih_to_unet(sd), "unet"
    if layout == "official_charmnet":
        if model_layout != "split":
            raise CheckpointError(
                "this is an official CharmNet generator checkpoint; load it into a split model such as "
                "'charmnet_idih' (the model you gave has a single network)"
            )
        sd, layout = official_charmnet_to_split(sd, getattr(model, "backbone_depth", 7)), "split"
    if layout == "unet" and model_layout == "split":
        dom = domain or getattr(model, "default_domain", None)
        if dom not in model.domains:
            raise CheckpointError(f"domain {dom!r} is not one of the model's domains {list(model.domains)}")
        renamed = {model.branch_key(dom, k): v for k, v in sd.items()}
        others = [k for k in model_keys if k not in renamed and any(k.startswith(f"{p}.{d}.") for p in ("encoders", "decoders", "heads") for d in model.domains if d != dom)]
        return renamed, others
    return dict(sd), []


def load_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
    domain: Optional[str] = None,
    source: str = "checkpoint",
) -> nn.Module:
    """Load a state dict of any known layout into ``model``.

    A single-network (iDIH) state dict loaded into a split model fills one domain's branch
    plus the shared stages (``domain``, default the model's default domain, "real"), which
    is how the official CharmNet code initialises its real branch.
    """
    sd, may_miss = _to_model_layout(model, clean_state_dict(dict(state_dict), source), domain)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k not in may_miss]
    unexpected = [k for k in sd if k not in own]
    shape_err = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if strict and (missing or unexpected or shape_err):
        arch = getattr(model, "architecture", type(model).__name__)
        lines = [f"{source} does not fit model {arch!r} ({detect_layout(state_dict.keys())} layout):"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shape_err)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
                lines.append(f"  {len(items)} {title}: {shown}")
        lines.append("  Check the architecture name and its arguments (e.g. ch, max_channels, split_depth).")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return model


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True, domain: Optional[str] = None) -> nn.Module:
    """Load weights from a file (ours, official iDIH or official CharmNet) into ``model``."""
    return load_weights(model, read_state_dict(path), strict=strict, domain=domain, source=str(path))


# --------------------------------------------------------------------------------------
# architecture inference (official files carry no config)
# --------------------------------------------------------------------------------------
def infer_model_args(sd: Mapping[str, torch.Tensor]) -> Tuple[str, Dict[str, Any]]:
    """Guess ``(architecture, model_args)`` for a generator state dict of any known layout,
    from its tensor shapes: depth, ch, max_channels, batchnorm_from, blending, split depth."""
    layout = detect_layout(sd.keys())
    if layout == "official_idih":
        sd, layout = official_idih_to_unet(sd), "unet"
    elif layout == "official_charmnet":
        sd, layout = official_charmnet_to_split(sd, depth=7), "split"
    if layout == "unet":
        enc = _stage_shapes(sd, r"^encoder\.(\d+)\.conv\.weight$")
        bn = [int(m.group(1)) for k in sd for m in [re.match(r"^encoder\.(\d+)\.norm\.weight$", k)] if m]
        fusion = "head.conv_attention.weight" in sd
        args = dict(depth=len(enc), ch=enc[0], max_channels=max(enc), batchnorm_from=min(bn) if bn else len(enc), image_fusion=fusion)
        arch = "idih256" if fusion else "dih256"
        if len(enc) == 8 and fusion:
            arch = "idih512"
        return arch, args
    if layout == "split":
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
        if set(dom) != {"rendered", "real"}:
            args["domains"] = dom
        return "charmnet_idih", args
    raise CheckpointError(f"cannot infer an architecture from keys like {list(sd)[:3]}")


def _stage_shapes(sd: Mapping[str, torch.Tensor], pattern: str) -> List[int]:
    found = {int(m.group(1)): v.shape[0] for k, v in sd.items() for m in [re.match(pattern, k)] if m}
    return [found[i] for i in sorted(found)]
