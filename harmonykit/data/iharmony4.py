"""iHarmony4 (HCOCO, HAdobe5k, HFlickr, Hday2night) in its official layout.

Layout::

    <root>/<Subset>/composite_images/<realid>_<maskid>_<k>.jpg
    <root>/<Subset>/masks/<realid>_<maskid>.png
    <root>/<Subset>/real_images/<realid>.jpg
    <root>/<Subset>/<Subset>_train.txt, <Subset>_test.txt     (bare composite file names)
    <root>/IHD_train.txt, IHD_nonhuman_train.txt, ...          (optional combined lists:
                                                                 HCOCO/composite_images/<name>)

Names are split from the right, so real ids with dashes or underscores work
(``d21901-20130410-181833_1_9.jpg`` -> mask ``d21901-20130410-181833_1.png`` -> real
``d21901-20130410-181833.jpg``). Any folder in this layout is accepted as a subset; ``root``
may also be one subset folder itself.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from ..registry import DATASETS
from .base import HarmonizationDataset, Problem, SampleRecord, resolve_list_path
from .prepared import find_prepared
from .io import DataFileNotFoundError, ListFormatError, ListLine, find_image, read_list

__all__ = ["IHARMONY4_SUBSETS", "IHarmony4Dataset", "parse_iharmony4_name", "iharmony4_subsets"]

_logger = logging.getLogger(__name__)

IHARMONY4_SUBSETS: Tuple[str, ...] = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
_MASK_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_REAL_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def parse_iharmony4_name(filename: str) -> Optional[Tuple[str, str]]:
    """``"<realid>_<maskid>_<k>.jpg"`` -> ``(realid, "<realid>_<maskid>")``, or None if it does not fit."""
    stem = Path(filename).stem
    parts = stem.rsplit("_", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], f"{parts[0]}_{parts[1]}"


def _is_subset_dir(p: Path) -> bool:
    return (p / "composite_images").is_dir()


def iharmony4_subsets(root: Union[str, Path]) -> List[str]:
    """Subset folders under ``root`` (official order first, then others by name)."""
    root = Path(root)
    found = [d.name for d in sorted(root.iterdir()) if d.is_dir() and _is_subset_dir(d)] if root.is_dir() else []
    official = [s for s in IHARMONY4_SUBSETS if s in found]
    return official + [s for s in found if s not in official]


def _split_list(subset_dir: Path, split: str) -> Path:
    exact = subset_dir / f"{subset_dir.name}_{split}.txt"
    if exact.is_file():
        return exact
    cands = sorted(subset_dir.glob(f"*{split}.txt"))
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise DataFileNotFoundError(f"no {split} list (expected {exact.name}, one line per composite file name)", exact)
    raise ListFormatError(
        f"several {split} lists ({', '.join(c.name for c in cands)}); expected exactly one; pass list_file=",
        subset_dir,
    )


@DATASETS.register("iharmony4")
class IHarmony4Dataset(HarmonizationDataset):
    """iHarmony4 triplets (``domain="real"``).

    Args:
        root: the iHarmony4 folder (holding ``HCOCO/`` ...) or one subset folder.
        subsets: subset names to read; None = every subset folder found under ``root``.
        split: ``"train"`` or ``"test"`` (reads ``<Subset>/<Subset>_<split>.txt``).
        list_file: a list to read instead of the per-subset lists; relative paths are taken
            from ``root``. Lines are ``HCOCO/composite_images/<name>.jpg`` (the combined
            DoveNet/CharmNet format) or bare names (searched in ``subsets``).
        restrict_to: a list file in either format; only samples it names are kept (the
            base/novel split: ``IHD_nonhuman_train.txt``, ``IHD_human_test.txt``).
        **kwargs: :class:`~harmonykit.data.base.HarmonizationDataset` options
            (``max_size``, ``mask_threshold``, ``validate``, ``skip_bad``, ``transform``, ``domain``).
    """

    def __init__(
        self,
        root: Union[str, Path],
        subsets: Optional[Union[str, Sequence[str]]] = None,
        split: str = "train",
        list_file: Optional[Union[str, Path]] = None,
        restrict_to: Optional[Union[str, Path]] = None,
        domain: str = "real",
        **kwargs,
    ) -> None:
        self.root = Path(root).expanduser()
        self.prepared = find_prepared(self.root)  # None for raw roots
        if not self.root.is_dir():
            raise DataFileNotFoundError(
                "iHarmony4 root folder not found (expected <root>/<Subset>/composite_images/)", self.root
            )
        single = _is_subset_dir(self.root)
        base = self.root.parent if single else self.root
        if single:
            subset_dirs = {self.root.name: self.root}
        else:
            names = iharmony4_subsets(self.root)
            subset_dirs = {n: self.root / n for n in names}
        if subsets is not None:
            wanted = [subsets] if isinstance(subsets, str) else list(subsets)
            for s in wanted:
                if s not in subset_dirs:
                    raise DataFileNotFoundError(
                        f"subset {s!r} not found (expected folder {base / s}/composite_images; "
                        f"found: {', '.join(subset_dirs) or 'none'})",
                        base / s,
                    )
            subset_dirs = {s: subset_dirs[s] for s in wanted}
        if not subset_dirs and list_file is None:
            raise DataFileNotFoundError(
                "no iHarmony4 subset folder (expected <root>/<Subset>/composite_images/)", self.root
            )
        self.split = split

        records: List[SampleRecord] = []
        problems: List[Problem] = []
        if list_file is not None:
            for ln in read_list(resolve_list_path(self.root, list_file), "iHarmony4 list file"):
                self._add(ln, base, subset_dirs, records, problems)
        else:
            auto = subsets is None and not single
            found = 0
            for name, d in subset_dirs.items():
                try:
                    lst = _split_list(d, split)
                except DataFileNotFoundError:
                    if auto:  # a discovered subset without this split is left out
                        _logger.info("iHarmony4: %s has no %s list; left out", name, split)
                        continue
                    raise
                found += 1
                for ln in read_list(lst, f"{name} {split} list"):
                    self._add(ln, base, {name: d}, records, problems)
            if not found:
                raise DataFileNotFoundError(
                    f"no subset has a {split} list (expected <Subset>/<Subset>_{split}.txt)", self.root
                )
        if restrict_to is not None:
            records = self._restrict(records, restrict_to)
        desc = f"iHarmony4 {split} ({', '.join(subset_dirs) or 'list'})"
        super().__init__(records, problems, domain=domain, description=desc, **kwargs)

    # --- list parsing -----------------------------------------------------------------
    @staticmethod
    def _add(
        ln: ListLine,
        base: Path,
        subset_dirs: Dict[str, Path],
        records: List[SampleRecord],
        problems: List[Problem],
    ) -> None:
        entry = ln.text.split()[0].replace("\\", "/")
        try:
            comp = IHarmony4Dataset._resolve(entry, base, subset_dirs, ln)
            parsed = parse_iharmony4_name(comp.name)
            if parsed is None:
                raise ListFormatError(
                    f"{entry!r} does not follow the iHarmony4 name pattern <realid>_<maskid>_<k>.jpg",
                    ln.path, ln.lineno,
                )
            real_id, mask_id = parsed
            sub_dir = comp.parent.parent
            mask = find_image(sub_dir / "masks", mask_id, _MASK_EXTS) or sub_dir / "masks" / f"{mask_id}.png"
            real = (
                find_image(sub_dir / "real_images", real_id, _REAL_EXTS) or sub_dir / "real_images" / f"{real_id}.jpg"
            )
            records.append(SampleRecord(comp.stem, comp, real, mask, sub_dir.name, ln.path, ln.lineno))
        except (ListFormatError, DataFileNotFoundError) as e:
            problems.append(Problem(e, entry, ""))

    @staticmethod
    def _resolve(entry: str, base: Path, subset_dirs: Dict[str, Path], ln: ListLine) -> Path:
        if "/" in entry:
            p = Path(entry)
            if not p.is_absolute():
                p = base / (entry[2:] if entry.startswith("./") else entry)
            if p.parent.name != "composite_images":
                raise ListFormatError(
                    f"{entry!r} is not in a composite_images/ folder (expected <Subset>/composite_images/<name>.jpg)",
                    ln.path, ln.lineno,
                )
            if not p.is_file():
                raise DataFileNotFoundError(f"composite {p} named by this line does not exist", ln.path, ln.lineno)
            return p
        for d in subset_dirs.values():
            p = d / "composite_images" / entry
            if p.is_file():
                return p
        where = ", ".join(str(d / "composite_images") for d in subset_dirs.values()) or str(base)
        raise DataFileNotFoundError(
            f"composite {entry!r} named by this line does not exist (looked in {where})", ln.path, ln.lineno
        )

    def _restrict(self, records: List[SampleRecord], restrict_to: Union[str, Path]) -> List[SampleRecord]:
        rf = Path(restrict_to)
        if not rf.is_absolute() and ((self.root / rf).is_file() or not rf.is_file()):  # root first, then the cwd
            rf = self.root / rf
        keep: Set[str] = set()
        for ln in read_list(rf, "restriction list"):
            keep.add(Path(ln.text.split()[0].replace("\\", "/")).name)
        out = [r for r in records if r.composite.name in keep]
        _logger.info("restricted to %s: kept %d of %d samples", rf, len(out), len(records))
        if not out:
            raise ListFormatError(f"names none of the {len(records)} samples read (expected composite file names)", rf)
        return out
