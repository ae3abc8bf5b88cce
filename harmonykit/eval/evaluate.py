"""Evaluation tables: per subset, per list-file group, per foreground-ratio bucket.

:func:`evaluate` runs one or several models (or the ``"composite"`` no-op baseline) over
triplets and returns an :class:`EvalResult` with every per-image record, the table of means,
CSV/JSON writers and a text table. By default metrics are computed at the protocol resolution
256 x 256 and the **protocol prepares its inputs** (:mod:`harmonykit.eval.prepare`): file
decoding, image resize, mask reading rule, the mask fed to the model and the metric mask
(``charmnet`` and ``idih``: as the official scripts, cv2 ``INTER_LINEAR``; ``harmonykit``: ours).
``size=None`` evaluates at the original resolution, running :func:`harmonykit.inference.harmonize`
with the chosen ``policy``.
"""
from __future__ import annotations

import copy

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from harmonykit.eval.metrics import METRIC_NAMES, MetricProtocol, get_protocol
from harmonykit.eval.triplets import Triplet, find_triplets, read_list_file
from harmonykit.utils import progress as _progress_bar, progress_enabled

__all__ = [
    "evaluate",
    "EvalResult",
    "FG_BUCKETS",
    "SUBSET_ORDER",
    "COMPOSITE",
    "fg_bucket",
    "progress_enabled",
]

_logger = logging.getLogger(__name__)

COMPOSITE = "composite"  # model name of the no-op baseline (prediction = composite)
SUBSET_ORDER = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
FG_BUCKETS: Tuple[Tuple[str, float, float], ...] = (
    ("fg 0-5%", 0.0, 0.05),
    ("fg 5-15%", 0.05, 0.15),
    ("fg 15-100%", 0.15, 1.0),
)


def fg_bucket(ratio: float) -> str:
    """Name of the foreground-ratio bucket (0-5 %, 5-15 %, 15-100 %; lower bound inclusive)."""
    for name, lo, hi in FG_BUCKETS:
        if lo <= ratio < hi or (hi >= 1.0 and ratio >= lo):
            return name
    return FG_BUCKETS[-1][0]


@dataclass
class EvalResult:
    """Per-image records and the table of means.

    Attributes:
        protocol: the metric protocol used.
        records: one dict per (model, image): ``model subset name groups fg_ratio bucket`` + metrics.
        table: ``{model: {row: {"n": ..., metric: mean}}}``; rows are subsets, groups, ``All`` and
            the foreground buckets.
        settings: how the evaluation was run (size, policy, flip, data).
    """

    protocol: MetricProtocol
    records: List[Dict[str, Any]]
    table: Dict[str, Dict[str, Dict[str, float]]]
    settings: Dict[str, Any] = field(default_factory=dict)

    def rows(self) -> List[str]:
        seen: List[str] = []
        for per_model in self.table.values():
            for r in per_model:
                if r not in seen:
                    seen.append(r)
        return seen

    def format_table(self, metrics: Sequence[str] = METRIC_NAMES, digits: int = 2) -> str:
        """A plain-text table: one line per (row, model)."""
        present = [m for m in metrics if any(m in v for pm in self.table.values() for v in pm.values())]
        header = ["subset", "model", "N"] + [m.upper().replace("F", "f", 1) if m.startswith("f") else m.upper() for m in present]
        lines = [header]
        for row in self.rows():
            for model, per in self.table.items():
                if row not in per:
                    continue
                v = per[row]
                cells = [row, model, str(int(v["n"]))]
                for m in present:
                    x = v.get(m, math.nan)
                    cells.append("-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{4 if m in ('ssim', 'fssim') else digits}f}")
                lines.append(cells)
        widths = [max(len(l[i]) for l in lines) for i in range(len(header))]
        out = []
        for k, l in enumerate(lines):
            out.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(l)))
            if k == 0:
                out.append("  ".join("-" * w for w in widths))
        train = sorted(k for k, v in (self.settings.get("model_mode") or {}).items() if v == "train")
        note = f"\nrun in train mode (batch statistics, live dropout): {', '.join(train)}" if train else ""
        return f"protocol: {self.protocol.name}{note}\n" + "\n".join(out)

    def to_csv(self, path: Union[str, Path]) -> Path:
        """Write the per-image records (one row per model and image)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = ["model", "subset", "name", "groups", "fg_ratio", "bucket"] + list(METRIC_NAMES) + ["psnr_peak", "fg_area"]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in self.records:
                row = dict(r)
                row["groups"] = ";".join(r.get("groups", ()))
                w.writerow(row)
        return path

    def summary(self) -> Dict[str, Any]:
        """JSON-serialisable summary (NaN -> null)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            return x

        return {
            "protocol": self.protocol.name,
            "protocol_description": self.protocol.description,
            "settings": self.settings,
            "models": clean(self.table),
        }

    def to_json(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2))
        return path


# --------------------------------------------------------------------------------------------
def _load_triplet(t: Triplet) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    from harmonykit.data.io import load_image_u8, load_mask_u8

    comp = load_image_u8(t.composite, "composite")
    mask = load_mask_u8(t.mask)
    if t.real is None:
        raise FileNotFoundError(f"no ground truth for {t.composite}")
    real = load_image_u8(t.real, "real")
    if mask.max(initial=0) <= 1:
        mask = mask * np.uint8(255)
    if comp.shape != real.shape:
        raise ValueError(f"size mismatch: composite {t.composite} is {comp.shape[1]}x{comp.shape[0]}, real {t.real} is {real.shape[1]}x{real.shape[0]}")
    if mask.shape != comp.shape[:2]:
        raise ValueError(f"mask size mismatch: {t.mask} is {mask.shape[1]}x{mask.shape[0]}, composite {t.composite} is {comp.shape[1]}x{comp.shape[0]}")
    return comp, mask, real


def _resolve_models(models: Any) -> Dict[str, Any]:
    if isinstance(models, Mapping):
        items = dict(models)
    elif isinstance(models, (list, tuple)):
        items = {}
        for i, m in enumerate(models):
            key = m if isinstance(m, str) else f"{type(m).__name__}"
            if key in items:
                key = f"{key}#{i}"
            items[key] = m
    else:
        items = {models if isinstance(models, str) else type(models).__name__: models}
    out = {}
    for name, m in items.items():
        if isinstance(m, str) and m != COMPOSITE:
            from harmonykit.factory import create_model

            m = create_model(m)
        out[name] = m
    return out


MODEL_MODES = ("eval", "train", "official")
"""How :func:`evaluate` runs the networks: ``eval`` (deterministic: running statistics, no
dropout), ``train`` (batch statistics of each test batch and live dropout, under ``no_grad``:
what DoveNet's official ``test.py`` does, since it runs without ``--eval``), ``official`` (each
model's ``pretrained_cfg["official_test_mode"]``, ``eval`` where it says nothing)."""


class TrainModeNetwork:
    """A copy of ``network`` run in train mode under ``no_grad``: batch statistics of every call
    (one test image in :func:`evaluate`) and live dropout, as DoveNet's official ``test.py``.

    The caller's network is never changed (the copy's running statistics absorb the updates).
    Dropout draws from a private generator state seeded with ``seed + call index``, so a run is
    reproducible and the global RNG is left as it was. Other attributes (``domains``,
    ``check_input_size``, ...) are those of the network.
    """

    def __init__(self, network: torch.nn.Module, seed: int = 0) -> None:
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"train-mode evaluation needs an nn.Module, got {type(network).__name__}")
        self.network = copy.deepcopy(network).train()
        self.seed, self.calls = int(seed), 0

    def __call__(self, composite: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        dev = next(iter(self.network.parameters()), torch.empty(0)).device
        devices = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.seed + self.calls)
            self.calls += 1
            out = self.network(composite.to(dev), mask.to(dev), **kwargs)
        return out

    def __getattr__(self, name: str) -> Any:  # only called for attributes not set in __init__
        if name == "network":
            raise AttributeError(name)
        return getattr(self.network, name)

    def __repr__(self) -> str:
        return f"TrainModeNetwork({type(self.network).__name__}, seed={self.seed})"


def resolve_model_mode(model: Any, mode: str) -> str:
    """``eval`` or ``train``: ``mode``, or for ``official`` the model's
    ``pretrained_cfg["official_test_mode"]`` (``eval`` when absent)."""
    if mode not in MODEL_MODES:
        raise ValueError(f"model_mode {mode!r}: expected one of {', '.join(MODEL_MODES)}")
    if mode != "official":
        return mode
    cfg = getattr(model, "pretrained_cfg", None) or {}
    official = cfg.get("official_test_mode") if isinstance(cfg, Mapping) else getattr(cfg, "official_test_mode", None)
    return official if official in ("eval", "train") else "eval"


def evaluate(
    models: Any,
    data: Union[str, Path, Sequence[Triplet]],
    protocol: Union[str, MetricProtocol] = "harmonykit",
    *,
    size: Optional[Tuple[int, int]] = (256, 256),
    policy: str = "resize",
    flip: bool = False,
    groups: Optional[Mapping[str, Union[str, Path, Iterable[str]]]] = None,
    split: Optional[str] = "test",
    ssim: bool = True,
    domain: Optional[str] = None,
    progress: Optional[bool] = None,
    model_mode: str = "eval",
    seed: int = 0,
) -> EvalResult:
    """Evaluate models on (composite, mask, real) triplets.

    Args:
        models: a model, ``"composite"`` (the no-op baseline), a model name for
            :func:`harmonykit.create_model`, or a list / ``{display name: model}`` mapping of them.
        data: a dataset root (iHarmony4 layout or folder dataset) or a list of triplets.
        protocol: metric protocol name or object (``harmonykit``, ``charmnet``, ``idih``).
        size: evaluation size (h, w); ``None`` = original resolution through ``harmonize``.
        policy: ``"resize"`` or ``"full"`` (only used with ``size=None``).
        flip: horizontal-flip test-time augmentation.
        groups: extra rows, ``{row name: list file or composite names}`` (e.g. base / novel).
        split: list-file split used to pick composites from a dataset root.
        ssim: also compute SSIM / fSSIM.
        domain: domain passed to multi-domain models (default ``"real"``).
        progress: show a tqdm bar (default: unless ``HARMONYKIT_DISABLE_PROGRESS=1``).
        model_mode: ``eval`` (default), ``train`` or ``official`` (see :data:`MODEL_MODES`;
            ``official`` runs DoveNet in train mode like its official ``test.py``).
        seed: dropout seed of train-mode evaluation (:class:`TrainModeNetwork`).

    Returns:
        :class:`EvalResult`.
    """
    from harmonykit.inference import harmonize, predict_lowres

    proto = get_protocol(protocol)
    trips = list(data) if not isinstance(data, (str, Path)) else find_triplets(data, split=split)
    if not trips:
        raise ValueError(f"no triplets to evaluate in {data}")
    nets = _resolve_models(models)
    modes = {name: ("eval" if isinstance(net, str) else resolve_model_mode(net, model_mode)) for name, net in nets.items()}
    nets = {name: (TrainModeNetwork(net, seed) if modes[name] == "train" else net) for name, net in nets.items()}
    group_names: Dict[str, set] = {}
    for g, src in (groups or {}).items():
        names = read_list_file(src) if isinstance(src, (str, Path)) else [Path(n).name for n in src]
        group_names[g] = {Path(n).stem for n in names}
    if size is not None:
        size = (int(size[0]), int(size[1]))
    show = progress_enabled() if progress is None else progress

    records: List[Dict[str, Any]] = []
    for t in _progress_bar(trips, enabled=show, desc=f"eval ({proto.name})", unit="img"):
        if size is not None:
            if t.real is None:
                raise FileNotFoundError(f"no ground truth for {t.composite}")
            prep = proto.prepare_inputs(t.composite, t.mask, t.real, size)
            comp_e, real_e, soft, mmask = prep.composite, prep.real, prep.model_mask, prep.metric_mask
        else:
            comp, mask_u8, real = _load_triplet(t)
            comp_e, real_e = comp, real
            mmask = mask_u8.astype(np.float32) / 255.0
            if proto.name == "charmnet":
                mmask = proto.binarize_mask(mask_u8, mask_u8.shape) * np.uint8(255)
        for name, net in nets.items():
            if isinstance(net, str):  # composite baseline
                pred = comp_e
            elif size is not None:
                c = torch.tensor(comp_e, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
                m = torch.from_numpy(soft)[None, None]
                pred = predict_lowres(net, c, m, domain=domain, flip=flip)[0].cpu()
            else:
                pred = harmonize(comp, mask_u8, net, policy, domain=domain, flip=flip)
            rec = proto(pred, real_e, mmask, ssim=ssim)[0]
            rec.update(
                model=name,
                subset=t.subset,
                name=t.name,
                groups=[g for g, ns in group_names.items() if Path(t.name).stem in ns],
                bucket=fg_bucket(rec["fg_ratio"]),
            )
            records.append(rec)

    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name in nets:
        rs = [r for r in records if r["model"] == name]
        per: Dict[str, Dict[str, float]] = {}
        subsets = sorted({r["subset"] for r in rs}, key=lambda s: (SUBSET_ORDER.index(s) if s in SUBSET_ORDER else len(SUBSET_ORDER), s))
        for s in subsets:
            per[s] = proto.mean(r for r in rs if r["subset"] == s)
        for g in group_names:
            sel = [r for r in rs if g in r["groups"]]
            if sel:
                per[g] = proto.mean(sel)
        per["All"] = proto.mean(rs)
        for b, _, _ in FG_BUCKETS:
            sel = [r for r in rs if r["bucket"] == b]
            if sel:
                per[b] = proto.mean(sel)
        table[name] = per
    settings = {
        "size": list(size) if size is not None else "original",
        "policy": policy if size is None else "resize to size",
        "flip": flip,
        "data": str(data) if isinstance(data, (str, Path)) else f"{len(trips)} triplets",
        "n_images": len(trips),
        "model_mode": {name: mode for name, mode in modes.items() if not isinstance(nets[name], str)},
        "groups": sorted(group_names),
        "inputs": proto.preparation().describe() if size is not None else "original resolution, harmonize()",
    }
    return EvalResult(proto, records, table, settings)
