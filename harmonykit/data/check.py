"""Validate a dataset folder and summarise it (``harmonykit check-data``).

Formats are detected from the layout: ``rdharmony`` (a ``*_labeled.txt`` list at the root or
one level down), ``iharmony4`` (``<Subset>/composite_images`` + ``<Subset>_{train,test}.txt``,
or such a subset folder itself), ``folder`` (``composite_images/``, ``masks/``,
``real_images/`` without split lists).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from .base import HarmonizationDataset, progress_disabled
from .folder import FolderDataset, flat_triplets
from .iharmony4 import IHarmony4Dataset, iharmony4_subsets
from .io import DataError, load_image, load_mask
from .prepared import find_prepared
from .rdharmony import RdHarmonyDataset

__all__ = ["detect_format", "SubsetSummary", "CheckReport", "check_dataset", "format_report"]

_logger = logging.getLogger(__name__)

FORMATS = ("iharmony4", "rdharmony", "folder")


def _labeled_lists(root: Path) -> List[Path]:
    return sorted(list(root.glob("*_labeled.txt")) + list(root.glob("*/*_labeled.txt")))


def detect_format(root: Union[str, Path]) -> str:
    """``"iharmony4"``, ``"rdharmony"`` or ``"folder"`` from the layout of ``root``.

    Raises:
        DataError: when the layout matches none of them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    if _labeled_lists(root):
        return "rdharmony"
    if (root / "composite_images").is_dir():
        if list(root.glob("*train.txt")) or list(root.glob("*test.txt")):
            return "iharmony4"
        return "folder"
    if iharmony4_subsets(root):
        return "iharmony4"
    if flat_triplets(root):
        return "folder"
    raise DataError(
        "unrecognised layout (expected <Subset>/composite_images + lists (iHarmony4), a *_labeled.txt list "
        "(RdHarmony), or composite_images/, masks/, real_images/ or <id>_composite.* files (folder))",
        root,
    )


@dataclass
class SubsetSummary:
    """Counts and statistics of one subset / split."""

    name: str
    samples: int = 0
    min_size: Optional[Tuple[int, int]] = None
    max_size: Optional[Tuple[int, int]] = None
    coverage: List[float] = field(default_factory=list)

    def add_size(self, size: Tuple[int, int]) -> None:
        area = size[0] * size[1]
        if self.min_size is None or area < self.min_size[0] * self.min_size[1]:
            self.min_size = size
        if self.max_size is None or area > self.max_size[0] * self.max_size[1]:
            self.max_size = size


@dataclass
class CheckReport:
    """What :func:`check_dataset` found."""

    root: str
    format: str
    subsets: List[SubsetSummary] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    prepared: Optional[str] = None  # the manifest's facts when ``root`` was written by ``harmonykit prepare``

    @property
    def ok(self) -> bool:
        return not self.problems


def _datasets(
    root: Path, fmt: str, list_file: Optional[str], split: Optional[str]
) -> List[Tuple[str, HarmonizationDataset]]:
    kw = dict(validate="none", skip_bad=True)
    if fmt == "rdharmony":
        lists = [Path(list_file)] if list_file else _labeled_lists(root)
        return [(Path(lf).stem, RdHarmonyDataset(root, list_file=lf, **kw)) for lf in lists]
    if fmt == "folder":
        return [("folder", FolderDataset(root, list_file=list_file, **kw))]
    if list_file:
        return [(Path(list_file).stem, IHarmony4Dataset(root, list_file=list_file, **kw))]
    out = []
    single = (root / "composite_images").is_dir()
    subsets = [root.name] if single else iharmony4_subsets(root)
    for s in subsets:
        d = root if single else root / s
        for sp in ([split] if split else ["train", "test"]):
            if not list(d.glob(f"*{sp}.txt")):
                continue
            out.append((f"{s} {sp}", IHarmony4Dataset(root, subsets=None if single else [s], split=sp, **kw)))
    return out


def check_dataset(
    root: Union[str, Path],
    format: Optional[str] = None,
    list_file: Optional[str] = None,
    split: Optional[str] = None,
    coverage: bool = True,
    deep: bool = False,
    progress: bool = True,
) -> CheckReport:
    """Scan a dataset: existence, headers, truncation, sizes; mask coverage; optionally a full decode.

    Args:
        root: the dataset folder.
        format: one of ``iharmony4``, ``rdharmony``, ``folder``; None detects it.
        list_file: a list to read instead of the default ones.
        split: ``train`` / ``test`` for iHarmony4 (None: both where present).
        coverage: decode masks for the foreground-coverage statistics.
        deep: fully decode composites and real images too (finds corrupt data inside files).
    """
    root = Path(root)
    fmt = format or detect_format(root)
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}; expected one of {FORMATS}")
    report = CheckReport(str(root), fmt)
    info = find_prepared(root)
    if info is not None:
        report.prepared = str(info)
        if not info.complete:
            report.problems.append(f"{root}: the harmonykit prepare run that wrote this copy did not finish "
                                   "(interrupted or had errors); run it again")
    try:
        parts = _datasets(root, fmt, list_file, split)
    except DataError as e:
        report.problems.append(str(e))
        return report
    if not parts:
        report.problems.append(f"{root}: no list file for split {split!r}")
    for name, ds in parts:
        summ = SubsetSummary(name)
        report.subsets.append(summ)
        report.problems += [p.message for p in ds.problems]
        probs = ds.scan("headers", progress=progress)
        report.problems += [p.message for p in probs]
        bad = {p.name for p in probs}
        good = [r for r in ds.records if r.name not in bad]
        summ.samples = len(good)
        it = good
        if (coverage or deep) and progress:
            from tqdm import tqdm

            it = tqdm(good, desc=f"decoding {name}", unit="sample", disable=progress_disabled())
        seen_masks: Dict[str, float] = {}
        for rec in it:
            if rec.size:
                summ.add_size(rec.size)
            try:
                if coverage:
                    key = str(rec.mask)
                    if key not in seen_masks:
                        seen_masks[key] = float(load_mask(rec.mask, threshold=0.5).mean())
                    summ.coverage.append(seen_masks[key])
                    if seen_masks[key] == 0.0:
                        report.problems.append(f"{rec.mask}: mask has no foreground (sample {rec.name})")
                if deep:
                    load_image(rec.composite, what="composite")
                    load_image(rec.real, what="real")
            except DataError as e:
                report.problems.append(f"{rec.where()}: sample {rec.name!r}: {e}")
    return report


def format_report(report: CheckReport, max_problems: int = 50) -> str:
    """A plain-text table of a :class:`CheckReport`."""
    lines = [f"dataset: {report.root} (format: {report.format})"]
    if report.prepared:
        lines.append(report.prepared)
    head = f"{'subset':<28} {'samples':>8}  {'smallest':>11}  {'largest':>11}  {'mask coverage min/mean/max':>28}"
    lines += [head, "-" * len(head)]
    total = 0
    for s in report.subsets:
        total += s.samples
        smin = f"{s.min_size[0]}x{s.min_size[1]}" if s.min_size else "-"
        smax = f"{s.max_size[0]}x{s.max_size[1]}" if s.max_size else "-"
        if s.coverage:
            c = torch.tensor(s.coverage)
            cov = f"{float(c.min()):.3f} / {float(c.mean()):.3f} / {float(c.max()):.3f}"
        else:
            cov = "-"
        lines.append(f"{s.name:<28} {s.samples:>8}  {smin:>11}  {smax:>11}  {cov:>28}")
    lines.append(f"{'total':<28} {total:>8}")
    if report.problems:
        lines.append(f"problems: {len(report.problems)}")
        lines += [f"  {p}" for p in report.problems[:max_problems]]
        if len(report.problems) > max_problems:
            lines.append(f"  ... and {len(report.problems) - max_problems} more")
    else:
        lines.append("problems: none")
    return "\n".join(lines)
