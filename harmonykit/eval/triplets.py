"""Minimal discovery of (composite, mask, real) triplets for evaluation.

Two layouts are understood:

* **iHarmony4**: ``ROOT/<Subset>/{composite_images,masks,real_images}`` with ``<Subset>_test.txt``
  (or ``*_test.txt``) listing composite file names; composite ``<realid>_<maskid>_<k>.jpg`` ->
  mask ``<realid>_<maskid>.png`` -> real ``<realid>.jpg``.
* **folder**: ``ROOT/{composite_images,masks,real_images}`` with matching stems (the iHarmony4
  naming is tried as a fallback), subset = the folder name.

(``harmonykit.data`` has full datasets; this module stays dependency-free so that evaluation
does not change when training data loading does.)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

__all__ = ["Triplet", "find_triplets", "find_pairs", "read_list_file", "IMAGE_EXTS"]

_logger = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_DIRS = ("composite_images", "masks", "real_images")


@dataclass(frozen=True)
class Triplet:
    """Paths of one evaluation sample; ``name`` is the composite file name."""

    composite: Path
    mask: Path
    real: Optional[Path]
    subset: str
    name: str


def read_list_file(path: Union[str, Path]) -> List[str]:
    """Composite names (basenames) listed one per line; blank lines and ``#`` comments skipped."""
    from harmonykit.data.io import read_list  # the one list-file reader

    return [Path(ln.text.split()[0]).name for ln in read_list(path) if not ln.text.startswith("#")]


def _index(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.is_file()}


def _match(stem: str, index: Dict[str, Path], drop: int) -> Optional[Path]:
    """Exact stem, then the stem without its last ``drop`` ``_``-separated parts (iHarmony4)."""
    if stem in index:
        return index[stem]
    parts = stem.split("_")
    for k in range(1, drop + 1):
        if len(parts) > k and "_".join(parts[:-k]) in index:
            return index["_".join(parts[:-k])]
    return None


def _subset_triplets(folder: Path, subset: str, split: Optional[str], require_real: bool) -> List[Triplet]:
    comps = _index(folder / "composite_images")
    masks = _index(folder / "masks")
    reals = _index(folder / "real_images")
    if not comps:
        raise FileNotFoundError(f"no images in {folder / 'composite_images'}")
    if not masks:
        raise FileNotFoundError(f"no masks in {folder / 'masks'} (expected one per composite)")
    names = None
    if split:
        lists = sorted(folder.glob(f"*_{split}.txt"))
        if lists:
            names = []
            for lf in lists:
                names += read_list_file(lf)
    chosen = [comps[Path(n).stem] for n in names if Path(n).stem in comps] if names is not None else list(comps.values())
    if names is not None and len(chosen) != len(names):
        missing = [n for n in names if Path(n).stem not in comps][:5]
        raise FileNotFoundError(
            f"{len(names) - len(chosen)} composite(s) listed in {folder}/*_{split}.txt are missing from "
            f"{folder / 'composite_images'}, e.g. {missing}"
        )
    out = []
    for c in chosen:
        m = _match(c.stem, masks, 1)
        if m is None:
            raise FileNotFoundError(
                f"no mask for composite {c}: expected {folder / 'masks'}/{c.stem}.png or the iHarmony4 name "
                f"{'_'.join(c.stem.split('_')[:-1])}.png"
            )
        r = _match(c.stem, reals, 2)
        if r is None and require_real:
            raise FileNotFoundError(
                f"no ground truth for composite {c}: expected {folder / 'real_images'}/{c.stem}.* or "
                f"{c.stem.split('_')[0]}.*"
            )
        out.append(Triplet(c, m, r, subset, c.name))
    return out


def find_triplets(
    root: Union[str, Path],
    split: Optional[str] = "test",
    subsets: Optional[Sequence[str]] = None,
    require_real: bool = True,
) -> List[Triplet]:
    """All triplets under ``root`` (iHarmony4 layout or a single folder dataset).

    Args:
        root: dataset root.
        split: list files ``*_<split>.txt`` restrict the composites when present (``None``: all).
        subsets: keep only these subset names.
        require_real: raise when a composite has no ground truth.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if (root / "composite_images").is_dir():
        trips = _subset_triplets(root, root.name, split, require_real)
    else:
        folders = [d for d in sorted(root.iterdir()) if (d / "composite_images").is_dir()]
        if not folders:
            raise FileNotFoundError(
                f"{root} is neither an iHarmony4 root (<Subset>/composite_images, masks, real_images) nor a folder "
                f"dataset (composite_images/, masks/, real_images/)"
            )
        trips = []
        for d in folders:
            if subsets and d.name not in subsets:
                continue
            trips += _subset_triplets(d, d.name, split, require_real)
    if subsets:
        trips = [t for t in trips if t.subset in subsets]
        if not trips:
            raise ValueError(f"no triplets left for subsets {list(subsets)} under {root}")
    return trips


def _first(folder: Path, stem: str) -> Optional[Path]:
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def find_pairs(root: Union[str, Path], max_depth: int = 4) -> List[Triplet]:
    """Composite / mask pairs (ground truth when present) anywhere under ``root``.

    Recognised, recursively: iHarmony4 roots and folder datasets (all composites, any split),
    ``<id>_composite.*`` + ``<id>_mask.*`` (+ ``<id>_real.*``) files, and folders holding
    ``composite.*`` + ``mask.*`` (+ ``real.*``). ``name`` is a unique id relative to ``root``
    (``sub/dir/<id>``) and ``subset`` the relative folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    found: List[Triplet] = []

    def rel(p: Path) -> str:
        r = p.relative_to(root).as_posix()
        return "" if r == "." else r

    def walk(d: Path, depth: int) -> None:
        if (d / "composite_images").is_dir() or any((c / "composite_images").is_dir() for c in d.iterdir() if c.is_dir()):
            for t in find_triplets(d, split=None, require_real=False):
                r = rel(t.composite.parent)
                found.append(Triplet(t.composite, t.mask, t.real, t.subset, f"{r}/{t.composite.stem}".lstrip("/")))
            return
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        for p in files:
            if p.stem == "composite":
                m = _first(d, "mask")
                if m is not None:
                    found.append(Triplet(p, m, _first(d, "real"), rel(d), rel(d) or d.name))
            elif p.stem.endswith("_composite"):
                base = p.stem[: -len("_composite")]
                m = _first(d, f"{base}_mask")
                if m is None:
                    _logger.warning("no mask for %s (expected %s_mask.png); skipped", p, base)
                    continue
                found.append(Triplet(p, m, _first(d, f"{base}_real"), rel(d), f"{rel(d)}/{base}".lstrip("/")))
        if depth < max_depth:
            for c in sorted(x for x in d.iterdir() if x.is_dir() and not x.name.startswith(".")):
                walk(c, depth + 1)

    walk(root, 0)
    return found
