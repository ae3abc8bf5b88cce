"""A generic folder dataset for users' own triplets.

Layout::

    <root>/composite_images/<stem>.<ext>
    <root>/masks/<stem>.<ext>
    <root>/real_images/<stem>.<ext>

Every image in ``composite_images/`` is a sample (sorted by name). Its mask and real image
have the same stem; when no such file exists, trailing ``_<part>`` pieces are stripped from
the stem one at a time (``photo_3`` -> ``photo``), so several composites can share one mask
and one real image, as in iHarmony4. Extensions may differ between the three folders
(``.jpg``, ``.png``, ``.webp`` ...).

A flat layout is accepted too: ``<root>/<id>_composite.<ext>``, ``<root>/<id>_mask.<ext>``,
``<root>/<id>_real.<ext>`` (used when ``composite_images/`` is absent).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Union

from ..registry import DATASETS
from .base import HarmonizationDataset, Problem, SampleRecord, resolve_list_path
from .prepared import find_prepared
from .io import IMAGE_EXTENSIONS, DataFileNotFoundError, ListFormatError, find_image, read_list

__all__ = ["FolderDataset", "find_partner", "flat_triplets"]

_logger = logging.getLogger(__name__)


def flat_triplets(root: Path) -> List[SampleRecord]:
    """Records of a flat ``<id>_composite.*`` / ``<id>_mask.*`` / ``<id>_real.*`` folder."""
    recs = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.endswith("_composite"):
            pid = p.stem[: -len("_composite")]
            mask = find_image(root, f"{pid}_mask") or root / f"{pid}_mask.png"
            real = find_image(root, f"{pid}_real") or root / f"{pid}_real{p.suffix}"
            recs.append(SampleRecord(pid, p, real, mask))
    return recs


def find_partner(folder: Path, stem: str) -> Optional[Path]:
    """The image in ``folder`` for composite ``stem``: the same stem, else shorter ``_`` prefixes."""
    s = stem
    while True:
        p = find_image(folder, s)
        if p is not None:
            return p
        if "_" not in s:
            return None
        s = s.rsplit("_", 1)[0]


@DATASETS.register("folder")
class FolderDataset(HarmonizationDataset):
    """Triplets from ``composite_images/``, ``masks/``, ``real_images/`` with matching stems.

    Args:
        root: the folder holding the three sub-folders.
        list_file: optional list of composite file names (one per line) to read instead of
            every file in ``composite_images/``.
        domain: sample domain (``"real"`` by default).
        **kwargs: :class:`~harmonykit.data.base.HarmonizationDataset` options.
    """

    def __init__(
        self,
        root: Union[str, Path],
        list_file: Optional[Union[str, Path]] = None,
        domain: str = "real",
        **kwargs,
    ) -> None:
        self.root = Path(root).expanduser()
        self.prepared = find_prepared(self.root)  # None for raw roots
        cdir = self.root / "composite_images"
        if not cdir.is_dir() and list_file is None and self.root.is_dir():
            flat = flat_triplets(self.root)
            if flat:
                super().__init__(flat, domain=domain, description=f"folder {self.root.name}", **kwargs)
                return
        if not cdir.is_dir():
            raise DataFileNotFoundError(
                "folder dataset has no composite_images/ (expected composite_images/, masks/, real_images/, "
                "or <id>_composite.* + <id>_mask.* + <id>_real.* files)",
                cdir,
            )
        for sub in ("masks", "real_images"):
            if not (self.root / sub).is_dir():
                raise DataFileNotFoundError(f"folder dataset has no {sub}/ folder", self.root / sub)
        records: List[SampleRecord] = []
        problems: List[Problem] = []
        if list_file is not None:
            for ln in read_list(resolve_list_path(self.root, list_file), "folder list file"):
                name = Path(ln.text.split()[0]).name
                comp = cdir / name
                if not comp.is_file():
                    problems.append(Problem(
                        DataFileNotFoundError(
                            f"composite {name!r} named by this line does not exist in {cdir}", ln.path, ln.lineno
                        ),
                        name,
                    ))
                    continue
                records.append(self._record(comp, ln.path, ln.lineno))
        else:
            files = sorted(p for p in cdir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ListFormatError(f"no images in composite_images/ (expected {', '.join(IMAGE_EXTENSIONS)})", cdir)
            records = [self._record(p) for p in files]
        super().__init__(records, problems, domain=domain, description=f"folder {self.root.name}", **kwargs)

    def _record(self, comp: Path, source: Optional[str] = None, line: Optional[int] = None) -> SampleRecord:
        stem = comp.stem
        mask = find_partner(self.root / "masks", stem) or self.root / "masks" / f"{stem}.png"
        real = find_partner(self.root / "real_images", stem) or self.root / "real_images" / f"{stem}{comp.suffix}"
        return SampleRecord(stem, comp, real, mask, "", source, line)
