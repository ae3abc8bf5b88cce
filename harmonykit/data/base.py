"""The common dataset base: sample records, validation scan, decoding, skipping bad samples."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from .io import (
    DataError,
    DataFileNotFoundError,
    ImageInfo,
    SizeMismatchError,
    fit_size,
    load_image,
    load_mask,
    probe_image,
)

__all__ = ["SampleRecord", "Problem", "HarmonizationDataset", "progress_disabled", "resolve_list_path"]

from harmonykit.utils import progress_enabled

_logger = logging.getLogger(__name__)

VALIDATE_LEVELS = ("none", "exists", "headers")


def resolve_list_path(root: Path, list_file: "str | Path") -> Path:
    """A list file given relative to the dataset root (preferred) or to the working directory."""
    lf = Path(list_file)
    if not lf.is_absolute() and ((root / lf).is_file() or not lf.is_file()):
        lf = root / lf
    return lf


def progress_disabled() -> bool:
    """True when ``HARMONYKIT_DISABLE_PROGRESS=1`` asks for no tqdm bars."""
    return not progress_enabled()


@dataclass
class SampleRecord:
    """Where one sample's files are, and where it was listed.

    Attributes:
        name: sample name (the composite's file stem).
        composite, real, mask: file paths.
        subset: sub-dataset name (``"HCOCO"``, ``"SHuman"``, ``""``).
        source, line: the list file and 1-based line that named the sample (or None).
        style_soft: ``(K,)`` soft style label (rendered samples), floats summing to 1.
        style: hard style index in ``0..K-1`` (rendered samples).
        size: ``(W, H)`` once validated.
    """

    name: str
    composite: Path
    real: Path
    mask: Path
    subset: str = ""
    source: Optional[str] = None
    line: Optional[int] = None
    style_soft: Optional[Tuple[float, ...]] = None
    style: Optional[int] = None
    size: Optional[Tuple[int, int]] = None

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source and self.line else str(self.composite)


@dataclass
class Problem:
    """One problem found by a scan; ``error`` is the exception to raise for it."""

    error: DataError
    name: str = ""
    subset: str = ""

    @property
    def message(self) -> str:
        return str(self.error)


def _wrap(err: DataError, rec: SampleRecord) -> DataError:
    """The same error type, prefixed with the list file and line that named the sample."""
    if rec.source is None or rec.line is None:
        return err
    return type(err)(f"sample {rec.name!r}: {err}", rec.source, rec.line)


#: mask reading rules -> the ``load_mask`` threshold (``>= t``; None keeps soft values)
MASK_RULES = {"threshold": 0.5, "truncate": 1.0, "soft": None}


class HarmonizationDataset(Dataset):
    """Composite / real / mask triplets as sample dicts.

    A sample is ``{"composite": (3, H, W), "real": (3, H, W), "mask": (1, H, W), "domain": str,
    "name": str}`` with float32 values in [0, 1], plus ``"style_soft"`` ``(K,)`` float64 and
    ``"style"`` int64 for rendered samples. Sizes vary between samples (full size, or at most
    ``max_size`` on the longer side); crop them with :mod:`harmonykit.data.augment`.
    ``style_soft`` is float64 (the official loader's dtype).

    Args:
        records: the samples.
        problems: problems met while building ``records`` (list lines that name nothing).
        domain: ``"real"`` or ``"rendered"``.
        max_size: longer-side cap in pixels; larger files are decoded reduced (JPEG DCT
            scaling) and resized. None keeps full resolution.
        mask_threshold: binarise masks at this value; None keeps soft masks.
        mask_rule: the mask reading rule by name, overriding ``mask_threshold``: ``"threshold"``
            (ours: ``>= 0.5``), ``"truncate"`` (bcmi CharmNet: ``(png / 255).astype(uint8)``, only
            255 -> 1, i.e. ``>= 1.0``) or ``"soft"`` (Samsung iDIH: ``png / 255`` kept soft).
        validate: ``"headers"`` (existence, header, truncation, equal sizes; the default),
            ``"exists"`` (existence only) or ``"none"``. Runs at construction.
        skip_bad: drop samples with problems instead of raising (logged with a count); bad
            files met while loading are skipped too (the next sample is returned).
        transform: optional callable applied to each sample dict (e.g. a per-sample crop).
    """

    #: what the manifest of a root written by ``harmonykit prepare`` says
    #: (:class:`~harmonykit.data.prepare.PreparedInfo`); None for raw roots
    prepared: Optional[Any] = None

    def __init__(
        self,
        records: Sequence[SampleRecord],
        problems: Sequence[Problem] = (),
        *,
        domain: str = "real",
        max_size: Optional[int] = None,
        mask_threshold: Optional[float] = 0.5,
        mask_rule: Optional[str] = None,
        validate: str = "headers",
        skip_bad: bool = False,
        transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        description: str = "dataset",
    ) -> None:
        if validate not in VALIDATE_LEVELS:
            raise ValueError(f"validate={validate!r}; expected one of {VALIDATE_LEVELS}")
        if max_size is not None and int(max_size) < 1:
            raise ValueError(f"max_size={max_size!r}; expected a positive number of pixels or None")
        self.records: List[SampleRecord] = list(records)
        self.domain = domain
        self.max_size = None if max_size is None else int(max_size)
        if mask_rule is not None:
            if mask_rule not in MASK_RULES:
                raise ValueError(f"mask_rule={mask_rule!r}; expected one of {tuple(MASK_RULES)}")
            mask_threshold = MASK_RULES[mask_rule]
        self.mask_rule = mask_rule
        self.mask_threshold = mask_threshold
        self.skip_bad = skip_bad
        self.transform = transform
        if self.prepared is not None:
            description = f"{description} [prepared: max_size={self.prepared.max_size}]"
            cap = self.prepared.max_size
            note = (f"; its images are at most {cap} px, not the max_size={self.max_size} asked for"
                    if cap and self.max_size is not None and self.max_size > cap else "")
            _logger.log(logging.INFO if note else logging.DEBUG, "%s: reading a prepared root (%s)%s",
                        description, self.prepared, note)
        self.description = description
        self.skipped = 0  # samples dropped at construction or skipped while loading (this process)
        self.problems: List[Problem] = list(problems)
        if validate != "none":
            self.problems += self.scan(level=validate)
        if self.problems:
            self._handle_problems()
        if not self.records:
            raise DataError(f"{description} has no samples")

    # --- validation -------------------------------------------------------------------
    def scan(self, level: str = "headers", progress: bool = False, threads: Optional[int] = None) -> List[Problem]:
        """Check every record (``"exists"`` or ``"headers"``); returns the problems found.

        File headers are read by a thread pool (``threads``, default ``min(8, cpus)``), so a
        scan of iHarmony4's 200k files takes seconds to a minute. Records that pass a
        ``"headers"`` scan get their ``size`` filled in.
        """

        def check(rec: SampleRecord) -> Optional[Problem]:
            try:
                if level == "exists":
                    for what in ("composite", "real", "mask"):
                        p = getattr(rec, what)
                        if not Path(p).is_file():
                            raise DataFileNotFoundError(f"{what} file not found (expected an image file here)", p)
                else:
                    rec.size = self._check_headers(rec)
            except DataError as e:
                return Problem(_wrap(e, rec), rec.name, rec.subset)
            return None

        n_threads = threads or min(8, os.cpu_count() or 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=len(self.records), desc=f"checking {self.description}", unit="sample",
                disable=progress_disabled(),
            )
        results: List[Optional[Problem]] = []
        if n_threads > 1 and len(self.records) > 64:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_threads) as pool:
                for res in pool.map(check, self.records, chunksize=32):
                    results.append(res)
                    if bar is not None:
                        bar.update(1)
        else:
            for rec in self.records:
                results.append(check(rec))
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return [p for p in results if p is not None]

    @staticmethod
    def _check_headers(rec: SampleRecord, truncation: bool = True) -> Tuple[int, int]:
        infos: Dict[str, ImageInfo] = {
            what: probe_image(getattr(rec, what), what, check_truncation=truncation)
            for what in ("composite", "real", "mask")
        }
        c = infos["composite"].size
        for what in ("real", "mask"):
            if infos[what].size != c:
                raise SizeMismatchError(
                    f"{what} is {infos[what].width}x{infos[what].height} but composite {rec.composite} is "
                    f"{c[0]}x{c[1]} (expected equal sizes)",
                    getattr(rec, what),
                )
        return c

    def validate(self, level: str = "headers") -> None:
        """Re-run the scan and raise the first problem (or drop bad samples with ``skip_bad``)."""
        self.problems = self.scan(level=level)
        if self.problems:
            self._handle_problems()

    def _handle_problems(self) -> None:
        bad = [p for p in self.problems]
        if not self.skip_bad:
            first = bad[0].error
            if len(bad) > 1:
                _logger.error("%s: %d problems found; the first one is raised", self.description, len(bad))
                for p in bad[1:6]:
                    _logger.error("  %s", p.message)
            raise first
        names = {(p.subset, p.name) for p in bad}
        self.records = [r for r in self.records if (r.subset, r.name) not in names]
        self.skipped += len(names)
        _logger.warning(
            "%s: skipped %d bad sample(s), %d left (skip_bad=True); first: %s",
            self.description, len(names), len(self.records), bad[0].message,
        )

    # --- loading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Dict[str, Any]:
        """Decode sample ``index`` (no ``transform``, no skipping)."""
        rec = self.records[index]
        try:
            size = rec.size or self._check_headers(rec, truncation=False)
            target = fit_size(size, self.max_size)
            load_size = None if target == size else target
            comp = load_image(rec.composite, load_size, "composite")
            real = load_image(rec.real, load_size, "real")
            mask = load_mask(rec.mask, load_size, self.mask_threshold, "mask")
        except DataError as e:
            raise _wrap(e, rec) from e
        if not (comp.shape[1:] == real.shape[1:] == mask.shape[1:]):
            raise _wrap(
                SizeMismatchError(
                    f"decoded sizes differ: composite {tuple(comp.shape[1:])}, real {tuple(real.shape[1:])}, "
                    f"mask {tuple(mask.shape[1:])} (expected equal sizes)",
                    rec.composite,
                ),
                rec,
            )
        sample: Dict[str, Any] = {
            "composite": comp,
            "real": real,
            "mask": mask,
            "domain": self.domain,
            "name": rec.name,
        }
        if rec.style_soft is not None:
            # float64, as the official list-file loader yields (numpy float64 -> default collate);
            # the official soft CE and G_total are float64 because of it
            sample["style_soft"] = torch.tensor(rec.style_soft, dtype=torch.float64)
            sample["style"] = torch.tensor(int(rec.style if rec.style is not None else 0), dtype=torch.int64)
        return sample

    def __getitem__(self, index: int) -> Dict[str, Any]:
        tries = len(self.records) if self.skip_bad else 1
        for k in range(tries):
            i = (index + k) % len(self.records)
            try:
                sample = self.load(i)
                break
            except DataError as e:
                if not self.skip_bad:
                    raise
                self.skipped += 1
                _logger.warning("%s: skipping bad sample (%d skipped so far): %s", self.description, self.skipped, e)
        else:
            raise DataError(f"{self.description}: every sample failed to load")
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def subset_counts(self) -> Dict[str, int]:
        """Number of samples per ``subset``."""
        out: Dict[str, int] = {}
        for r in self.records:
            out[r.subset] = out.get(r.subset, 0) + 1
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples, domain={self.domain!r}, "
            f"subsets={self.subset_counts()}, max_size={self.max_size}"
            + (f", prepared=max_size {self.prepared.max_size}" if self.prepared is not None else "")
            + ")"
        )
