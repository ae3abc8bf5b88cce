"""Checkpoint I/O: read any weights file safely, recognise its key layout, load it strictly.

This module knows no network: each model file registers the layouts it can read
(:func:`register_layout`, timm's ``checkpoint_filter_fn`` idea), e.g. ``official_idih`` in
``models/idih.py`` and ``official_charmnet`` in ``models/charmnet.py``. A layout is a key-set
detector, a converter to a model's own names, optionally the inverse, and an architecture
guess for files that carry no config.

Files are read with safetensors, or with ``torch.load(weights_only=True)``: nothing is ever
unpickled as code. Loading is strict: a mismatch lists the missing and unexpected keys.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from harmonykit.registry import CHECKPOINT_LAYOUTS

__all__ = [
    "CheckpointError",
    "CheckpointLayout",
    "register_layout",
    "register_single_network_layout",
    "rename_by_table",
    "read_state_dict",
    "detect_layout",
    "convert_state_dict",
    "load_weights",
    "load_checkpoint",
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
# layouts (registered by the model files)
# --------------------------------------------------------------------------------------
@dataclass
class CheckpointLayout:
    """A family of state-dict key names.

    Args:
        name: ``"official_idih"``, ``"unet"``...
        detect: ``keys -> bool``; layouts are tried by descending ``priority``.
        to_model: ``(model, sd, domain) -> (renamed sd, model keys allowed to stay missing)``:
            rename ``sd`` to ``model``'s names, or ``None`` when the model's own names are
            this layout.
        convert: ``{target layout: fn(sd, **geometry) -> sd}`` plain renamings.
        infer: ``sd -> (architecture, model_args)`` for files that carry no config.
    """

    name: str
    detect: Callable[[List[str]], bool]
    to_model: Optional[Callable[..., Tuple[StateDict, List[str]]]] = None
    convert: Optional[Dict[str, Callable[..., StateDict]]] = None
    infer: Optional[Callable[[Mapping[str, torch.Tensor]], Tuple[str, Dict[str, Any]]]] = None
    priority: int = 0


def register_layout(layout: CheckpointLayout) -> CheckpointLayout:
    """Declare a key layout in ``CHECKPOINT_LAYOUTS`` (called by the model files)."""
    CHECKPOINT_LAYOUTS.register(layout, name=layout.name, force=True)
    return layout


def register_single_network_layout(
    name: str,
    detect: Callable[[List[str]], bool],
    to_ours: Callable[[Mapping[str, torch.Tensor]], StateDict],
    infer: Optional[Callable[[Mapping[str, torch.Tensor]], Any]] = None,
    priority: int = 30,
    ours: Optional[str] = None,
) -> CheckpointLayout:
    """Register the official layout of a single network: ``to_ours`` renames it to the model's
    own names; a CharmNet model on that backbone (``from_single_network``) takes it as one
    domain's branch plus the shared stages, as the official CharmNet code initialises it.
    ``ours``: the name of the model's own layout, for :func:`convert_state_dict`."""

    def to_model(model: nn.Module, sd: StateDict, domain: Optional[str]) -> Tuple[StateDict, List[str]]:
        ours = to_ours(sd)
        if hasattr(model, "from_single_network"):
            return model.from_single_network(ours, domain)
        return ours, []

    convert = {ours: lambda sd, **_: to_ours(sd)} if ours else None
    return register_layout(CheckpointLayout(name, detect=detect, to_model=to_model, convert=convert, infer=infer, priority=priority))


def rename_by_table(sd: Mapping[str, torch.Tensor], table: Mapping[str, str], what: str) -> StateDict:
    """Rename every key of ``sd`` through ``table`` (old name -> new name, values untouched), in
    ``table``'s order; a key ``table`` does not know raises ``KeyError`` naming it and ``what``."""
    unknown = [k for k in sd if k not in table]
    if unknown:
        raise KeyError(f"unexpected key(s) {unknown[:5]} in {what}")
    return {new: sd[old] for old, new in table.items() if old in sd}


def _layouts() -> List[CheckpointLayout]:
    return sorted((CHECKPOINT_LAYOUTS.get(n) for n in CHECKPOINT_LAYOUTS.list()), key=lambda lay: -lay.priority)


def detect_layout(keys: Iterable[str]) -> str:
    """Name the layout of a key set; ``"unknown"`` when no registered layout matches."""
    keys = list(keys)
    for lay in _layouts():
        if lay.detect(keys):
            return lay.name
    return "unknown"


def get_layout(name: str) -> CheckpointLayout:
    if name not in CHECKPOINT_LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {name!r}; registered: {CHECKPOINT_LAYOUTS.list()}")
    return CHECKPOINT_LAYOUTS.get(name)


def convert_state_dict(sd: Mapping[str, torch.Tensor], src: str, dst: str, **geometry: Any) -> StateDict:
    """Rename keys between layouts (``src="auto"`` detects the source), e.g.
    ``official_idih`` <-> ``unet``, ``official_charmnet`` <-> ``split``."""
    if src == "auto":
        src = detect_layout(sd.keys())
    if src == dst:
        return dict(sd)
    fns = get_layout(src).convert or {}
    if dst not in fns:
        pairs = sorted((lay.name, t) for lay in _layouts() for t in (lay.convert or {}))
        raise ValueError(f"cannot convert a {src!r} state dict to {dst!r}; supported: {pairs}")
    return fns[dst](sd, **geometry)


# --------------------------------------------------------------------------------------
# loading into a model
# --------------------------------------------------------------------------------------
def _to_model_layout(model: nn.Module, sd: Mapping[str, torch.Tensor], domain: Optional[str]) -> Tuple[StateDict, List[str]]:
    """Rename ``sd`` to ``model``'s names. Returns (renamed dict, model keys allowed to stay
    missing: e.g. the other domains' branches when a single network initialises one branch)."""
    layout = detect_layout(sd.keys())
    if layout == "unknown" or set(sd) <= set(model.state_dict()):
        return dict(sd), []
    lay = get_layout(layout)
    if lay.to_model is None:
        return dict(sd), []
    return lay.to_model(model, dict(sd), domain)


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
    """Guess ``(architecture, model_args)`` for a state dict of any registered layout, from its
    key names and tensor shapes."""
    layout = detect_layout(sd.keys())
    lay = get_layout(layout) if layout != "unknown" else None
    if lay is None or lay.infer is None:
        raise CheckpointError(f"cannot infer an architecture from keys like {list(sd)[:3]} ({layout} layout)")
    return lay.infer(sd)
